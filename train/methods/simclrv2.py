"""SimCLR v2: big self-supervised models are strong semi-supervised learners (Chen, Kornblith, Swersky,
Norouzi & Hinton, NeurIPS 2020, arXiv 2006.10029; code: google-research/simclr, ``tf2/``).

SimCLR (``train.methods.simclr``) with a deeper projection head, three layers instead of two, that is
partly kept: with few labels (1%, 10%) the paper fine-tunes from the head's first layer rather than
from the encoder. So this method exports twice: the encoder, as every method, and
``extra_exports()["projected"]``, the encoder with the head's first layer (``zoo.projected``), which
``zoo.load(NAME + "-projected", num_classes=N)`` fine-tunes. Weight decay 1e-4, and the learning rate
scales with sqrt(B): 0.1 x sqrt(B) in the paper's 800 epochs, 0.075 x sqrt(B) in the README's 100.

The paper also adds MoCo's memory: negatives from a queue filled by a momentum encoder (Sec. 2,
"+ memory", a small gain at batch 4096). The public code has none; here ``memory=K`` turns it on (a
queue of K projections from a momentum copy of encoder and head, m = 0.999), off by default.
"""
from __future__ import annotations

from torch.nn import functional as F

from zoo import projected

from .. import distributed
from ..blocks.momentum import momentum_copy, momentum_update
from ..blocks.queue import Queue
from ..config import Config
from .base import make_backbone
from .simclr import CPU as V1_CPU
from .simclr import AUTHORS_CODE
from .simclr import PAPER_METHOD as V1_METHOD
from .simclr import SimCLR, augment


class SimCLRv2(SimCLR):
    def __init__(self, backbone, augment, dim: int = 128, head_layers: int = 3, temperature: float = 0.1,
                 memory: int = 0, memory_momentum: float = 0.999):
        super().__init__(backbone, augment, dim, head_layers, temperature)
        self.memory, self.memory_momentum = memory, memory_momentum
        if memory:
            self.momentum_encoder = momentum_copy(self.backbone, self.head)
            self.queue = Queue(memory, dim)

    def negatives(self, views):
        """The memory's keys as negatives (from before this step), then this batch's momentum keys enqueued."""
        if not self.memory:
            return None
        momentum_update(self.momentum_encoder, (self.backbone, self.head), self.memory_momentum)  # no gradient
        keys = F.normalize(self.momentum_encoder(views.detach()).float(), dim=1)
        negatives = self.queue.keys.clone()  # a copy: the enqueue writes in place what backward still needs
        self.queue.enqueue(distributed.gather_no_grad(keys))
        return negatives

    def extra_exports(self) -> dict:
        arch = self.backbone.pretrained_cfg["architecture"]  # the timm name make_backbone built
        return {"projected": projected.assemble(arch, self.backbone, self.head[0])}


def build(cfg: Config, num_images: int, mean, std) -> SimCLRv2:
    method = dict(cfg.method)
    views = augment(cfg.image_size, mean, std, method.pop("strength", 1.0), method.pop("blur", 0.5),
                    impl="simclrv2")
    return distributed.global_batch_norm(SimCLRv2(make_backbone(cfg), views, **method))


PAPER_METHOD = dict(V1_METHOD, head_layers=3, memory=0)
# v1's CPU preset (the CIFAR-10 recipe with T = 0.1) with v2's changes: the 3-layer head and wd 1e-4 (the tf2
# README's CIFAR-10 command); at T = 0.5 it too stays below raw pixels (77.77% kNN)
CPU = dict(V1_CPU, weight_decay=1e-4, method=dict(V1_CPU["method"], head_layers=3, memory=0))

PRESETS = {
    "smoke": Config(**dict(CPU, subset=512, epochs=2, batch_size=64, knn_subset=512, warmup_epochs=0)),
    # the smoke run with the memory on (a queue of 500 from a momentum encoder)
    "smoke-memory": Config(**dict(CPU, subset=512, epochs=2, batch_size=64, knn_subset=512, warmup_epochs=0,
                                  method=dict(CPU["method"], memory=500))),
    "fmnist": Config(**CPU, epochs=4),
    # the paper's recipe (Sec. 4), as the released 800-epoch checkpoints were trained: ResNet-50, batch 4096, LARS
    # lr 0.1 x sqrt(B) = 6.4, wd 1e-4, warm-up over 5% of the epochs (40) then cosine, T = 0.1, the 3-layer head;
    # memory=65536 adds the paper's MoCo-style memory
    "paper": Config(**AUTHORS_CODE, arch="resnet50", dataset="imagenet", image_size=224, epochs=800, batch_size=4096,
                    lr=0.1, lr_scaling="sqrt", weight_decay=1e-4, warmup_epochs=40, method=PAPER_METHOD,
                    knn_subset=50000, workers=8),
    # the authors' README command (tf2): 100 epochs, lr 0.075 x sqrt(B) = 4.8, the code's 10 warm-up epochs
    "paper-100ep": Config(**AUTHORS_CODE, arch="resnet50", dataset="imagenet", image_size=224, epochs=100, batch_size=4096,
                          lr=0.075, lr_scaling="sqrt", weight_decay=1e-4, warmup_epochs=10, method=PAPER_METHOD,
                          knn_subset=50000, workers=8),
}
