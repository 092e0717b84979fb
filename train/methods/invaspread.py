"""InvaSpread: unsupervised embedding learning via invariant and spreading instance feature
(Ye, Zhang, Yuen & Chang, CVPR 2019, arXiv 1904.03436; code: mangye16/Unsupervised_Embedding_Learning).

Every image is its own class, and the batch is its own classifier: no memory bank, no weights per
instance. Two random views of each of B images go through one encoder (backbone, linear map to 128
dimensions, L2 normalisation); each of the 2B features must pick its other view out of the batch
(invariant) and be picked by no other image's view (spreading), with a softmax at T = 0.1 over the
batch's own, current features.

The authors ran their CIFAR recipe under ``nn.DataParallel`` (``--gpu 0,1,2,3``): the backbone split
across GPUs, the loss on the gathered batch. Under DDP the softmax therefore runs over the global batch
too: each rank's anchors against every rank's features, gathered without gradient. The loss treats that
side as constants anyway, and DDP's mean of the ranks' gradients (each of a loss over its own 2B/world
anchors) is the gradient of the mean over all 2B anchors: the authors'. BatchNorm statistics stay per
rank, as they were per GPU under DataParallel.
"""
from __future__ import annotations

from torch import nn
from torch.nn import functional as F

from .. import distributed
from ..augment import InstanceAugment
from ..blocks.losses import invariance_spreading_loss
from ..blocks.views import TwoViews
from ..config import Config
from .base import Method, Progress, StepOutput, make_backbone


class Augment(InstanceAugment):
    """``demo_seen.py``'s training transform, batched: crop (scale 0.2-1), colour jitter 0.4 on all four,
    grayscale p=0.2, flip. The authors jitter before greying; lemniscate, whose order InstanceAugment
    keeps, greys first."""

    def __init__(self, size: int, mean, std):
        super().__init__(size, mean, std)
        crop, grey, jitter, flip, normalize = self.ops
        self.ops = nn.Sequential(crop, jitter, grey, flip, normalize)


class InvaSpread(Method):
    def __init__(self, backbone: nn.Module, augment: nn.Module, dim: int = 128, temperature: float = 0.1):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.num_features, dim)
        self.augment = TwoViews(augment)  # the engine reads the views' crops from self.augment
        self.temperature = temperature

    def embed(self, images):
        """f = normalise(W g(x)): the 128-d unit feature the softmax compares."""
        return F.normalize(self.head(self.backbone(images)).float(), dim=1)

    def forward(self, images, index, progress: Progress) -> StepOutput:
        f = self.embed(self.augment(images))  # [2B, d]: view 1 of every image, then view 2
        keys = distributed.gather_no_grad(f)  # the global batch, as constants of the loss
        loss, p_positive = invariance_spreading_loss(f, keys, distributed.rank() * len(f), self.temperature)
        return StepOutput(loss, {"p_positive": p_positive.mean()})


def build(cfg: Config, num_images: int, mean, std) -> InvaSpread:
    return InvaSpread(make_backbone(cfg), Augment(cfg.image_size, mean, std), **cfg.method)


PAPER_METHOD = dict(dim=128, temperature=0.1)
# The authors' ResNets start every residual branch at full scale; timm zeroes each block's last BN, which at
# 32 px leaves the initial network a chain of strided 1 x 1 subsamplings (README: InstDisc's ResNets).
AUTHORS_INIT = dict(zero_init_last=False)
CPU = dict(arch="resnet18", model_args=AUTHORS_INIT, image_size=32, lr=0.03, method=PAPER_METHOD)

PRESETS = {
    # seconds: the tests' end-to-end run
    "smoke": Config(**CPU, subset=512, epochs=2, batch_size=64, knn_subset=512),
    # the CPU benchmark: Fashion-MNIST at 32 px on two cores, the paper's loss and optimiser, a cosine schedule
    "fmnist": Config(**CPU, epochs=3, batch_size=256, schedule="cosine", knn_subset=10000),
    # demo_seen.py --dataset cifar: CIFAR-style ResNet-18 (3x3 stride-1 stem, no max-pool, zoo/architectures.py),
    # batch 128, SGD 0.03, momentum 0.9, wd 5e-4, epochs 0-300, lr x0.1 from epoch 120, x0.05 from 160 and
    # x0.01 from 200 (of the base lr)
    "paper": Config(arch="resnet18_cifar", dataset="cifar10", image_size=32, epochs=301, batch_size=128, lr=0.03,
                    momentum=0.9, weight_decay=5e-4, schedule="step", milestones=(120, 160, 200),
                    lr_factors=(0.1, 0.05, 0.01), method=PAPER_METHOD),
}
