"""The weighted kNN monitor of Wu et al. 2018 (Sec. 3.4): the common yardstick of every method."""
from __future__ import annotations

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, Subset

from .data import Data, random_subset


@torch.no_grad()
def embed(backbone, batches, preprocess, device) -> torch.Tensor:
    """L2-normalised backbone features of an iterable of uint8 image batches, computed in eval mode."""
    was_training = backbone.training
    backbone.eval()
    features = [F.normalize(backbone(preprocess(chunk.to(device))).float(), dim=1).cpu()
                for chunk in batches]
    backbone.train(was_training)
    return torch.cat(features)


@torch.no_grad()
def knn_predict(train_features, train_labels, test_features, num_classes: int,
                k: int = 200, temperature: float = 0.07, chunk: int = 1024) -> torch.Tensor:
    """Class of each test feature by the vote of its k most cosine-similar training features,
    each weighted by exp(s_i / T)."""
    predictions = []
    for queries in test_features.split(chunk):
        similarity, neighbours = (queries @ train_features.T).topk(min(k, len(train_features)), dim=1)
        votes = torch.zeros(len(queries), num_classes, device=queries.device)
        votes.scatter_add_(1, train_labels[neighbours], (similarity / temperature).exp())
        predictions.append(votes.argmax(dim=1))
    return torch.cat(predictions)


def knn_accuracy(train_features, train_labels, test_features, test_labels, **kwargs) -> float:
    """Top-1 accuracy of the kNN vote, in %."""
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    predicted = knn_predict(train_features, train_labels, test_features, num_classes, **kwargs)
    return (predicted == test_labels).float().mean().item() * 100


def knn_monitor(backbone, data: Data, preprocess, device, limit: int = 0, seed: int = 0) -> float:
    """kNN top-1 (k=200, T=0.07) of L2-normalised backbone features: ``limit`` training images (0: all)
    voting for ``limit // 4`` test images, a random subset drawn by ``seed``, the same at every epoch."""
    def features(dataset, count):
        kept = random_subset(len(dataset), count, seed)
        loader = DataLoader(Subset(dataset, kept), batch_size=512)
        return embed(backbone, (x for x, _ in loader), preprocess, device), kept

    (train, train_kept), (test, test_kept) = features(data.train, limit), features(data.test, limit // 4)
    return knn_accuracy(train, data.train_labels[train_kept], test, data.test_labels[test_kept])
