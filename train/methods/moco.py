"""MoCo: momentum contrast for unsupervised visual representation learning (He, Fan, Wu, Xie & Girshick,
CVPR 2020, arXiv 1911.05722; code: facebookresearch/moco).

Contrastive learning as a dictionary look-up. A query q = f_q(x^q) must find its key k+ = f_k(x^k),
the same image under another augmentation, among K keys of earlier batches (InfoNCE, eq. 1, T = 0.07).
The dictionary is a queue: each step enqueues the batch's keys and drops the oldest, so K (65536) is
decoupled from the batch. Its keys stay consistent because the key encoder is not trained but follows
the query encoder slowly, theta_k <- m theta_k + (1 - m) theta_q with m = 0.999 (eq. 2), updated, as
in the authors' code, at the start of each step from the query encoder's values before the step.

Shuffling BN (Sec. 3.3): the key batch is shuffled across processes before the key encoder and
restored after, so the two encoders' BatchNorms see different sub-batches. ``bn_splits`` is the number
of BatchNorm groups in the global batch, 8 as the paper's 8 GPUs held: each of W processes splits its
own sub-batch into bn_splits / W groups, so one GPU runs the recipe as eight did
(``train.blocks.shuffle_bn``).

``mlp=True`` is MoCo v2's head (``train.methods.mocov2``): a hidden layer as wide as the encoder
(2048 on ResNet-50), ReLU, no BatchNorm, as the authors' ``builder.py``.
"""
from __future__ import annotations

from torch import nn
from torch.nn import functional as F

from .. import distributed
from ..augment import InstanceAugment
from ..blocks.losses import info_nce
from ..blocks.momentum import momentum_copy, momentum_update
from ..blocks.queue import Queue
from ..blocks.shuffle_bn import shuffled_forward, split_batch_norm
from ..blocks.views import TwoViews
from ..config import Config
from .base import Method, Progress, StepOutput, make_backbone


def projection(width: int, dim: int, mlp: bool) -> nn.Module:
    """MoCo v1's linear fc to ``dim``, or v2's fc-ReLU-fc with a hidden layer of the encoder's width."""
    if not mlp:
        return nn.Linear(width, dim)
    return nn.Sequential(nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, dim))


def local_splits(bn_splits: int, world: int) -> int:
    """The BatchNorm groups of one process's sub-batch, for ``bn_splits`` groups over ``world`` processes."""
    if bn_splits % world and world % bn_splits:
        raise ValueError(f"bn_splits={bn_splits} BatchNorm groups cannot be shared by {world} processes: make "
                         "one a multiple of the other (8 as the paper, or the number of processes)")
    return max(1, bn_splits // world)


class MoCo(Method):
    def __init__(self, backbone: nn.Module, augment: nn.Module, dim: int = 128, queue_size: int = 65536,
                 momentum: float = 0.999, temperature: float = 0.07, mlp: bool = False, bn_splits: int = 1):
        super().__init__()
        splits = local_splits(bn_splits, distributed.world_size())
        self.backbone = split_batch_norm(backbone, splits) if splits > 1 else backbone
        self.head = projection(backbone.num_features, dim, mlp)
        self.augment = TwoViews(augment)  # rows 0..B-1 the queries' views, B..2B-1 the keys'
        self.momentum_encoder = momentum_copy(self.backbone, self.head)
        self.queue = Queue(queue_size, dim)
        self.momentum, self.temperature = momentum, temperature

    def forward(self, images, index, progress: Progress) -> StepOutput:
        x_q, x_k = self.augment(images).chunk(2)
        q = F.normalize(self.head(self.backbone(x_q)).float(), dim=1)
        momentum_update(self.momentum_encoder, (self.backbone, self.head), self.momentum)  # no gradient
        k = F.normalize(shuffled_forward(self.momentum_encoder, x_k).float(), dim=1)
        # a copy of the queue in the loss: the enqueue below writes in place what backward still needs
        loss, accuracy = info_nce(q, k, self.queue.keys.clone(), self.temperature)
        self.queue.enqueue(distributed.gather_no_grad(k))
        return StepOutput(loss, {"top1": accuracy})


def build(cfg: Config, num_images: int, mean, std) -> MoCo:
    return MoCo(make_backbone(cfg), InstanceAugment(cfg.image_size, mean, std), **cfg.method)


# the authors build torchvision's ResNet-50, whose blocks' last BatchNorm starts at 1 (timm's default zeroes it)
TORCHVISION_INIT = dict(zero_init_last=False)
# main_moco.py's defaults, the v1 recipe: 128-d, K = 65536, m = 0.999, T = 0.07, a linear head, and the
# BatchNorm groups of its 8 GPUs (batch 256: 32 images each)
PAPER_METHOD = dict(dim=128, queue_size=65536, momentum=0.999, temperature=0.07, mlp=False, bn_splits=8)
# Fashion-MNIST at 32 px on a CPU: the paper's method on a ResNet-18 with the authors' init (see InstDisc's
# presets), 8 BatchNorm groups of 32 as the paper's 8 GPUs held, a queue of 4096 (the 60k images fill 65536 in
# a single epoch, and keys that old come from a very different encoder in a run this short), momentum 0.99 (0.999
# averages the key encoder over about 1000 steps: the whole run of 4 x 234), and, as the authors' CIFAR demo,
# wd 5e-4 and a cosine schedule (per step: see MoCo v2's CPU preset)
CPU = dict(arch="resnet18", model_args=TORCHVISION_INIT, image_size=32, batch_size=256, lr=0.03,
           weight_decay=5e-4, schedule="cosine", knn_subset=10000,
           method=dict(PAPER_METHOD, queue_size=4096, momentum=0.99))

PRESETS = {
    # seconds: the tests' end-to-end run (a queue that wraps around mid-batch: 500 keys, batches of 64)
    "smoke": Config(**dict(CPU, subset=512, epochs=2, batch_size=64, knn_subset=512,
                           method=dict(CPU["method"], queue_size=500, bn_splits=2))),
    "fmnist": Config(**CPU, epochs=4),
    # main_moco.py -a resnet50 --lr 0.03 --batch-size 256 on 8 GPUs: SGD, momentum 0.9, wd 1e-4, 200 epochs,
    # lr x0.1 at 120 and 160; 8 BatchNorm groups however many processes hold them
    "paper": Config(arch="resnet50", model_args=TORCHVISION_INIT, dataset="imagenet", image_size=224, epochs=200,
                    batch_size=256, lr=0.03, momentum=0.9, weight_decay=1e-4, schedule="step", milestones=(120, 160),
                    method=PAPER_METHOD, knn_subset=50000, workers=8),
}
