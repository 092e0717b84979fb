"""Training data as uint8 image tensors with their indices (InstDisc needs to know which image is which).

Fashion-MNIST comes from Debian's ``dataset-fashion-mnist`` where it is installed, else
from torchvision's download; any other folder of images is read with ImageFolder.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset, TensorDataset

import zoo.data

FMNIST_STATS = dict(mean=(0.2860,) * 3, std=(0.3530,) * 3)  # training set, grey replicated to RGB


class Indexed(Dataset):
    """(image, index) pairs of an (image, label) dataset: the index names the image's memory-bank row."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        return self.dataset[index][0], index


@dataclass
class Data:
    """A training split and a test split of (uint8 image [C, H, W], label), and their statistics."""

    train: Dataset
    test: Dataset
    train_labels: torch.Tensor
    test_labels: torch.Tensor
    mean: tuple
    std: tuple
    crop_pct: float  # of the evaluation transform: small images are used whole


def fashion_mnist(train: bool) -> TensorDataset:
    split = zoo.data.fashion_mnist(train)
    return TensorDataset(split.data.unsqueeze(1), split.targets)


def image_folder(path: Path, size: int) -> Dataset:
    """An ImageFolder of ``size`` x ``size`` uint8 tensors; the random crop happens later, batched on device."""
    from torchvision import datasets, transforms

    to_tensor = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size), transforms.PILToTensor()])
    return datasets.ImageFolder(path, transform=to_tensor)


def _labels(dataset: Dataset) -> torch.Tensor:
    if isinstance(dataset, Subset):
        return _labels(dataset.dataset)[dataset.indices]
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[1]
    return torch.as_tensor(dataset.targets)


def load(name: str, size: int, subset: int = 0) -> Data:
    """``fashion-mnist`` or a folder with ``train/`` and ``val/`` ImageFolders (e.g. ImageNet).

    ``subset`` keeps the first N training and N // 4 test images, for quick runs.
    """
    if name == "fashion-mnist":
        train, test, stats, crop_pct = fashion_mnist(True), fashion_mnist(False), FMNIST_STATS, 1.0
    else:
        from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
        root = Path(name).expanduser()
        if not (root / "train").is_dir() or not (root / "val").is_dir():
            raise FileNotFoundError(f"{root} needs train/ and val/ folders of class sub-folders (ImageFolder layout)")
        crop_pct = 0.875
        resize = round(size / crop_pct)  # crops are taken on the device from this square
        train, test = image_folder(root / "train", resize), image_folder(root / "val", resize)
        stats = dict(mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD)
    if subset:
        train, test = Subset(train, range(min(subset, len(train)))), Subset(test, range(min(max(subset // 4, 1), len(test))))
    return Data(train, test, _labels(train), _labels(test), tuple(stats["mean"]), tuple(stats["std"]), crop_pct)
