"""MoCo v3: an empirical study of training self-supervised Vision Transformers (Chen, Xie & He, ICCV 2021,
arXiv 2104.02057; code: facebookresearch/moco-v3).

MoCo without its queue. A query q = g(f_q(x1)) (the base encoder with a projection MLP, then a prediction MLP)
must find the key k = f_k(x2) of the same image among the keys of the same, large batch (InfoNCE, eq. 1, T = 0.2
for ViTs, 1.0 for ResNets), symmetrised over the two views: ctr(q1, k2) + ctr(q2, k1). The key (momentum) encoder
is the base encoder with its projector, averaged theta_k <- m theta_k + (1 - m) theta_q at the start of each step
with m rising from 0.99 to 1 on a cosine (``--moco-m-cos``, every reference setup); it gets no gradient, and its
keys of every process are gathered without one.

For ViTs (Sec. 4): a fixed sin-cos position embedding and a frozen random patch projection (``stop_grad_conv1``),
the paper's cure for the instability that large batches and learning rates cause (``train.blocks.vit``).

As the authors' ``builder.py``: MLPs of Linear layers without bias, BatchNorm and ReLU, 4096 wide to 256, the
projector's output BN without affine; the projector has 2 layers on a ResNet and 3 on a ViT, the predictor 2 (its
output BN on a ViT only). Each view is its own encoder call (BatchNorm statistics per view), and the two views are
BYOL's asymmetric ones. The optimiser is LARS for ResNets (biases and norms excluded, as their LARS) and AdamW for
ViTs (weight decay on every parameter, as their ``AdamW(model.parameters())``).
"""
from __future__ import annotations

import torch
from torch import nn

from .. import distributed
from ..augment import StrongAugment, colour_jitter
from ..blocks.heads import mlp
from ..blocks.losses import in_batch_info_nce
from ..blocks.momentum import cosine_momentum, momentum_copy, momentum_update
from ..blocks.views import TwoViews
from ..blocks.vit import is_vit, moco_v3_vit
from ..config import Config
from .base import Method, Progress, StepOutput, make_backbone


class MoCoV3(Method):
    def __init__(self, backbone: nn.Module, augment: nn.Module, second: nn.Module, hidden: int = 4096, dim: int = 256,
                 temperature: float = 0.2, base_momentum: float = 0.99):
        super().__init__()
        vit = is_vit(backbone)
        self.backbone = backbone
        depth = [hidden] * (2 if vit else 1)  # MoCo_ViT's 3-layer projector, MoCo_ResNet's 2-layer one
        self.projector = mlp([backbone.num_features, *depth, dim], last_bias=False, last_norm="plain")
        self.predictor = mlp([dim, hidden, dim], last_bias=False, last_norm="plain" if vit else "none")
        self.augment = TwoViews(augment, second)
        self.momentum_encoder = momentum_copy(self.backbone, self.projector)
        self.temperature, self.base_momentum = temperature, base_momentum

    def forward(self, images, index, progress: Progress) -> StepOutput:
        x1, x2 = self.augment(images).chunk(2)
        q1 = self.predictor(self.projector(self.backbone(x1)))  # a call per view, as the authors'
        q2 = self.predictor(self.projector(self.backbone(x2)))
        with torch.no_grad():
            m = cosine_momentum(self.base_momentum, progress.fraction)
            momentum_update(self.momentum_encoder, (self.backbone, self.projector), m)  # before the keys, as theirs
            k1, k2 = (distributed.gather_no_grad(self.momentum_encoder(x)) for x in (x1, x2))
        offset = distributed.rank() * len(q1)
        loss1, top1 = in_batch_info_nce(q1, k2, offset, self.temperature)
        loss2, _ = in_batch_info_nce(q2, k1, offset, self.temperature)
        return StepOutput(loss1 + loss2, {"top1": top1})


def augment(size: int, mean, std, crop_min: float, blur: float, solarize: float) -> StrongAugment:
    """One of main_moco.py's two views (BYOL's): crop (area ``crop_min``-1), torchvision's colour jitter (0.4, 0.4,
    0.2, 0.1) with p 0.8, grayscale 0.2, blur (sigma 0.1-2) with p ``blur``, solarisation with p ``solarize``, flip."""
    return StrongAugment(size, mean, std, scale=(crop_min, 1.0), jitter=colour_jitter(0.4, 0.4, 0.2, 0.1), blur=blur,
                         solarize=solarize)


def build(cfg: Config, num_images: int, mean, std) -> MoCoV3:
    method = dict(cfg.method)
    crop_min, stop_grad_conv1 = method.pop("crop_min", 0.08), method.pop("stop_grad_conv1", True)
    (blur1, blur2), (solarize1, solarize2) = method.pop("blur", (1.0, 0.1)), method.pop("solarize", (0.0, 0.2))
    views = (augment(cfg.image_size, mean, std, crop_min, blur1, solarize1),
             augment(cfg.image_size, mean, std, crop_min, blur2, solarize2))
    backbone = make_backbone(cfg)
    if is_vit(backbone):
        moco_v3_vit(backbone, stop_grad_conv1)
    return distributed.global_batch_norm(MoCoV3(backbone, *views, **method))  # SyncBN, as main_moco.py


# main_moco.py's ViT setups (CONFIG.md): 256-d, 4096-wide MLPs, T = 0.2, m 0.99 on its cosine, crops from 8% of the
# area, the patch projection frozen; AdamW (betas 0.9, 0.999) lr 1.5e-4 x B/256, wd 0.1 on every parameter, 40
# warm-up epochs then a cosine to 0, per step; batch 4096 over 32 (ViT-S) or 64 (ViT-B) GPUs, 300 epochs
VIT_METHOD = dict(hidden=4096, dim=256, temperature=0.2, base_momentum=0.99, crop_min=0.08, stop_grad_conv1=True,
                  blur=(1.0, 0.1), solarize=(0.0, 0.2))
VIT_CODE = dict(optimizer="adamw", lr=1.5e-4, lr_scaling="linear", weight_decay=0.1, schedule="cosine",
                warmup_epochs=40, epochs=300, batch_size=4096, dataset="imagenet", image_size=224,
                method=VIT_METHOD, knn_subset=50000, workers=8)
# its ResNet-50 setups: T = 1.0, crops from 20%; LARS (momentum 0.9, eta 1e-3, lr after the momentum buffer; biases
# and norms without decay or trust ratio) lr 0.6 x B/256, wd 1e-6, 10 warm-up epochs, 100 epochs; torchvision's
# ResNet-50 with zero_init_residual, each block's last BatchNorm starting at 0 as timm's does
RESNET_METHOD = dict(VIT_METHOD, temperature=1.0, crop_min=0.2)
del RESNET_METHOD["stop_grad_conv1"]
RESNET_CODE = dict(optimizer="lars", momentum=0.9, lars_eta=1e-3, exclude_norm_bias=True, lr=0.6, lr_scaling="linear",
                   weight_decay=1e-6, schedule="cosine", warmup_epochs=10, epochs=100, batch_size=4096,
                   method=RESNET_METHOD)
# Fashion-MNIST at 32 px on a CPU: the ResNet setup on the lineage's ResNet-18, batch 512 (lr 0.6 x 2), half an
# epoch of warm-up (as SimCLR's CPU preset), and no blur at 32 px (as the CIFAR recipes of MoCo and SimCLR)
CPU = dict(RESNET_CODE, arch="resnet18", image_size=32, batch_size=512, warmup_epochs=0.5, knn_subset=10000,
           method=dict(RESNET_METHOD, blur=(0.0, 0.0)))
PRESETS = {
    # seconds: the tests' end-to-end runs, on the ResNet and on a two-block ViT
    "smoke": Config(**dict(CPU, subset=512, epochs=2, batch_size=64, knn_subset=512, warmup_epochs=0)),
    "smoke-vit": Config(**dict(VIT_CODE, arch="vit_tiny_patch16_224", dataset="fashion-mnist", image_size=32,
                               model_args=dict(img_size=32, patch_size=8, depth=2), subset=512, epochs=2, batch_size=64,
                               warmup_epochs=0, knn_subset=512, workers=0, method=dict(VIT_METHOD, blur=(0.0, 0.0)))),
    "fmnist": Config(**dict(CPU, epochs=4)),
    # the paper's ViT-Small (CONFIG.md, 73.2% linear, the released model): 12 heads where timm's ViT-S has 6
    "paper": Config(**VIT_CODE, arch="vit_small_patch16_224", model_args=dict(num_heads=12)),
    "paper-vit-b": Config(**VIT_CODE, arch="vit_base_patch16_224"),  # 76.7% linear
    # ResNet-50: CONFIG.md's 100 epochs (68.9% linear), and its 1000 epochs (lr 0.3, wd 1.5e-6, m 0.996: 74.6%, the
    # released model)
    "paper-r50": Config(**RESNET_CODE, arch="resnet50", dataset="imagenet", image_size=224, knn_subset=50000, workers=8),
    "paper-r50-1000ep": Config(**dict(RESNET_CODE, lr=0.3, weight_decay=1.5e-6, epochs=1000,
                                      method=dict(RESNET_METHOD, base_momentum=0.996)),
                               arch="resnet50", dataset="imagenet", image_size=224, knn_subset=50000, workers=8),
}
