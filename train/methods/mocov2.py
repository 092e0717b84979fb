"""MoCo v2: improved baselines with momentum contrastive learning (Chen, Fan, Girshick & He, 2020,
arXiv 2003.04297; code: facebookresearch/moco, ``--mlp --moco-t 0.2 --aug-plus --cos``).

MoCo v1 (``train.methods.moco``) with three changes taken from SimCLR: an MLP projection head
(fc-ReLU-fc, hidden as wide as the encoder), stronger augmentation (colour jitter 0.4/0.4/0.4/0.1
with probability 0.8, grayscale 0.2, Gaussian blur with probability 0.5), and a cosine learning-rate
schedule; T = 0.2. Everything else, the queue and the momentum encoder, is MoCo's.
"""
from __future__ import annotations

from ..augment import StrongAugment, colour_jitter
from ..config import Config
from .base import make_backbone
from .moco import CPU as V1_CPU
from .moco import PAPER_METHOD as V1_METHOD
from .moco import TORCHVISION_INIT
from .moco import MoCo


def augment(size: int, mean, std, blur: float = 0.5) -> StrongAugment:
    """main_moco.py --aug-plus: crop scale 0.2-1, jitter (0.4, 0.4, 0.4, 0.1) with p 0.8, grayscale 0.2,
    blur sigma 0.1-2 with p ``blur``, flip."""
    return StrongAugment(size, mean, std, scale=(0.2, 1.0), jitter=colour_jitter(0.4, 0.4, 0.4, 0.1), blur=blur)


def build(cfg: Config, num_images: int, mean, std) -> MoCo:
    method = dict(cfg.method)
    blur = method.pop("blur", 0.5)
    return MoCo(make_backbone(cfg), augment(cfg.image_size, mean, std, blur), **method)


PAPER_METHOD = dict(V1_METHOD, temperature=0.2, mlp=True)
# as MoCo v1's CPU preset, with v2's head, temperature and augmentation; no blur at 32 px, as the CIFAR
# recipes of MoCo and SimCLR leave it out (a sigma of 2 px blurs a 32-px image to a few blobs). Its cosine runs
# per step: over 4 epochs the authors' per-epoch one is a staircase at 1, 0.85, 0.5 and 0.15 of the base lr
CPU = dict(V1_CPU, method=dict(V1_CPU["method"], temperature=0.2, mlp=True, blur=0.0))
PAPER = dict(arch="resnet50", model_args=TORCHVISION_INIT, dataset="imagenet", image_size=224, batch_size=256, lr=0.03, momentum=0.9,
             weight_decay=1e-4, schedule="cosine-epoch", method=PAPER_METHOD, knn_subset=50000, workers=8)

PRESETS = {
    "smoke": Config(**dict(CPU, subset=512, epochs=2, batch_size=64, knn_subset=512,
                           method=dict(CPU["method"], queue_size=500, bn_splits=2))),
    "fmnist": Config(**CPU, epochs=4),
    # main_moco.py --mlp --moco-t 0.2 --aug-plus --cos, lr 0.03, batch 256, 8 GPUs: 200 epochs (67.5% linear)
    "paper": Config(**PAPER, epochs=200),
    # the same for 800 epochs (71.1% linear), the longer of the two released models
    "paper-800ep": Config(**PAPER, epochs=800),
}
