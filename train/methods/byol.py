"""BYOL: bootstrap your own latent (Grill et al., NeurIPS 2020, arXiv 2006.07733; code:
google-deepmind/deepmind-research, byol/).

No negatives: an online network (encoder f_theta, projector g_theta, predictor q_theta) predicts the projection
that a target network (f_xi, g_xi) gives of another view of the same image. The target is not trained: it is an
exponential moving average of the online network, xi <- tau xi + (1 - tau) theta after every step, with tau
rising from 0.996 to 1 on a cosine of training progress (Sec. 3.2). The loss (eq. 2) is the squared distance of
the normalised prediction and target projection, 2 - 2 cos(q_theta(z_theta), z'_xi), symmetrised by swapping the
views (eq. 4: L + L~), the target's side without gradient. The predictor and the slow target are what keep the
outputs from collapsing (without the predictor, Table 5 reads 0.2%: ``predictor=False``, ``bench.claims``); the
step logs the collapse gauge of ``train.blocks.collapse``.

As the authors' code: the projector and predictor are MLPs 4096 -> 256 (Linear with bias, BatchNorm, ReLU,
Linear without bias), the two views are augmented differently (blur always in the first, one time in ten in the second, which
is solarised one time in five), each view is its own network call (BatchNorm statistics per view; the target's in
training mode), and LARS trains it, biases and BatchNorm excluded from weight decay and from the trust ratio.
Not as theirs: the target starts as a copy of the online network, where they draw it apart (their comment finds
no difference); the weights start as timm and PyTorch initialise them, not as Haiku (truncated normal); and no
online linear classifier trains beside it (the kNN monitor reads the features instead).
"""
from __future__ import annotations

import torch
from torch import nn

from .. import distributed
from ..augment import StrongAugment
from ..blocks.collapse import GAUGE, output_std
from ..blocks.heads import mlp
from ..blocks.losses import regression_loss
from ..blocks.momentum import cosine_momentum, momentum_copy, momentum_update
from ..blocks.views import TwoViews
from ..colour_tf import ColourJitterTF
from ..config import Config
from .base import Method, Progress, StepOutput, make_backbone


class BYOL(Method):
    def __init__(self, backbone, augment, second, hidden: int = 4096, dim: int = 256, base_momentum: float = 0.996,
                 predictor: bool = True):
        super().__init__()
        self.backbone = backbone
        self.projector = mlp([backbone.num_features, hidden, dim], hidden_bias=True, last_bias=False)
        # predictor=False: the ablation of Table 5, where the online projection must match the target's directly
        self.predictor = mlp([dim, hidden, dim], hidden_bias=True, last_bias=False) if predictor else nn.Identity()
        self.augment = TwoViews(augment, second)
        self.momentum_encoder = momentum_copy(self.backbone, self.projector)  # the target network (f_xi, g_xi)
        self.base_momentum = base_momentum

    def forward(self, images, index, progress: Progress) -> StepOutput:
        x1, x2 = self.augment(images).chunk(2)
        z1, z2 = self.projector(self.backbone(x1)), self.projector(self.backbone(x2))  # a call per view, as the authors'
        with torch.no_grad():  # the target side: sg(z'_xi)
            t1, t2 = self.momentum_encoder(x1), self.momentum_encoder(x2)
        loss = regression_loss(self.predictor(z1), t2) + regression_loss(self.predictor(z2), t1)  # L + L~ (eq. 4)
        return StepOutput(loss, {GAUGE: output_std(z1)})

    def after_step(self, progress: Progress) -> None:
        """xi <- tau xi + (1 - tau) theta with the new online weights, tau on its cosine (``cosine_momentum``)."""
        tau = cosine_momentum(self.base_momentum, progress.fraction)
        momentum_update(self.momentum_encoder, (self.backbone, self.projector), tau)


def augment(size: int, mean, std, blur: float, solarize: float) -> StrongAugment:
    """One of BYOL's two views (dataset.py and augmentations.py, Table 6): crop (area 0.08-1, aspect log-uniform in
    3/4-4/3), flip, colour jitter (brightness 0.4 added, contrast 0.4, saturation 0.2, hue 0.1; in random order per
    image) with p 0.8, grayscale 0.2, blur (sigma 0.1-2 per image, a tenth of the side, zero padding) with p
    ``blur``, solarisation with p ``solarize``. The authors draw the crop once and clamp it to the image where
    torchvision's sampler draws again (up to 10 times): the two differ only for draws wider or taller than it."""
    jitter = ColourJitterTF(0.4, 0.4, 0.2, 0.1, p=0.8, impl="simclrv1")
    return StrongAugment(size, mean, std, scale=(0.08, 1.0), jitter=jitter, blur=blur, solarize=solarize,
                         blur_padding="zeros")


def build(cfg: Config, num_images: int, mean, std) -> BYOL:
    method = dict(cfg.method)
    (blur1, blur2), (solarize1, solarize2) = method.pop("blur", (1.0, 0.1)), method.pop("solarize", (0.0, 0.2))
    views = augment(cfg.image_size, mean, std, blur1, solarize1), augment(cfg.image_size, mean, std, blur2, solarize2)
    return distributed.global_batch_norm(BYOL(make_backbone(cfg), *views, **method))  # cross-replica BN, as theirs


# byol_experiment's config: 4096-wide MLPs to 256, tau_base 0.996; the views' blur and solarisation probabilities
PAPER_METHOD = dict(hidden=4096, dim=256, base_momentum=0.996, blur=(1.0, 0.1), solarize=(0.0, 0.2))
# the authors' optimiser: LARS (momentum 0.9, eta 1e-3, the lr after the momentum buffer), biases and BatchNorm
# spared from weight decay and the trust ratio, a linear warm-up then cosine
AUTHORS_CODE = dict(optimizer="lars", momentum=0.9, lars_eta=1e-3, exclude_norm_bias=True, schedule="cosine",
                    lr_scaling="linear")
# Fashion-MNIST at 32 px on a CPU: the lineage's ResNet-18 with the authors' init (InstDisc's presets say why),
# batch 512 with the authors' lr 0.2 x B/256 and wd 1.5e-6, half an epoch of warm-up (as SimCLR's CPU preset),
# tau_base 0.99 (0.996 averages the target over about 250 steps, half of this run of 4 x 117), and no blur at
# 32 px (as the CIFAR recipes of MoCo and SimCLR)
CPU = dict(AUTHORS_CODE, arch="resnet18", model_args=dict(zero_init_last=False), image_size=32, batch_size=512,
           lr=0.2, weight_decay=1.5e-6, warmup_epochs=0.5, knn_subset=10000,
           method=dict(PAPER_METHOD, base_momentum=0.99, blur=(0.0, 0.0)))

PRESETS = {
    # seconds: the tests' end-to-end run
    "smoke": Config(**dict(CPU, subset=512, epochs=2, batch_size=64, knn_subset=512, warmup_epochs=0)),
    "fmnist": Config(**CPU, epochs=4),
    # the paper's ImageNet recipe (Sec. 3.3 and Appendix C; byol_experiment's defaults): ResNet-50, batch 4096, LARS
    # lr 0.2 x B/256 = 3.2, wd 1.5e-6, 10 warm-up epochs then cosine, 1000 epochs (74.3% linear, the released model)
    "paper": Config(**AUTHORS_CODE, arch="resnet50", dataset="imagenet", image_size=224, epochs=1000, batch_size=4096,
                    lr=0.2, weight_decay=1.5e-6, warmup_epochs=10, method=PAPER_METHOD, knn_subset=50000, workers=8),
}
