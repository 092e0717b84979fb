"""CPC's patch model as timm architectures: a grid of overlapping patches, each encoded by a timm backbone,
the grid mean-pooled into one feature (van den Oord et al. 2018, arXiv 1807.03748, Sec. 3.2).

CPC learns an encoder of patches, not of images. The representation it evaluates is the encoder run on
every patch of a grid (v1: 64 x 64 patches, stride 32, a 7 x 7 grid of a 256 x 256 image) and
mean-pooled. ``cpc_<encoder>`` builds exactly that around the timm ``<encoder>``; ``patch_size`` and
``stride`` are model arguments, so config.json's ``model_args`` rebuilds the same grid, and every other
model argument goes to the encoder (e.g. ``layers``/``channels`` to keep the first three stages, as the
paper keeps ResNet-v2-101 up to its third block). Once this module is imported (``import zoo`` does it)::

    timm.create_model("local-dir:FOLDER", pretrained=True)   # [B, 3, H, W] -> [B, num_features]
"""
from __future__ import annotations

import timm
import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn


def grid_size(image_size: int, patch_size: int, stride: int) -> int:
    """Patches per side of a grid that covers ``image_size`` exactly: (image - patch) / stride + 1."""
    if patch_size > image_size or stride < 1 or (image_size - patch_size) % stride:
        raise ValueError(f"a grid of {patch_size}-px patches at stride {stride} does not cover a {image_size}-px image "
                         f"exactly. Fix: choose a stride dividing image_size - patch_size ({image_size - patch_size}), "
                         "e.g. patch 64 stride 32 for 256 px, patch 16 stride 8 for 32 px.")
    return (image_size - patch_size) // stride + 1


def cut_patches(images: torch.Tensor, patch_size: int, stride: int) -> torch.Tensor:
    """The grid of overlapping patches of ``images`` [B, C, H, W] as [B, rows, cols, C, patch, patch];
    patch (i, j) is ``images[..., i*stride : i*stride + patch, j*stride : j*stride + patch]``."""
    for side in images.shape[-2:]:
        grid_size(side, patch_size, stride)
    return images.unfold(2, patch_size, stride).unfold(3, patch_size, stride).permute(0, 2, 3, 1, 4, 5)


class PatchModel(nn.Module):
    """A timm encoder applied to every patch of a grid; features are the mean over the grid.

    ``forward_features`` gives the patch feature map [B, num_features, rows, cols] (CPC's z), and
    ``forward_head`` pools it, as a timm CNN pools its last feature map.
    """

    def __init__(self, encoder: str, patch_size: int, stride: int, num_classes: int = 0, in_chans: int = 3,
                 **encoder_args):
        super().__init__()
        self.patch_size, self.stride = patch_size, stride
        # the encoder's own global average pool turns each patch's map into one vector z
        self.encoder = timm.create_model(encoder, num_classes=0, in_chans=in_chans, **encoder_args)
        self.num_features = self.head_hidden_size = self.encoder.num_features
        self.reset_classifier(num_classes)

    def encode_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """Patches [B, rows, cols, C, P, P] -> z [B, num_features, rows, cols], all patches in one batch."""
        b, rows, cols = patches.shape[:3]
        z = self.encoder(patches.flatten(0, 2))
        return z.view(b, rows, cols, -1).permute(0, 3, 1, 2)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_patches(cut_patches(x, self.patch_size, self.stride))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A fresh linear classifier on the pooled features (``num_classes`` 0: none)."""
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()


ENCODERS = ("resnet18", "resnet50", "resnetv2_18", "resnetv2_50", "resnetv2_101")


def _cfg(encoder: str) -> dict:
    """No released weights: the stem and head names for timm, and the paper's 256-px ImageNet input."""
    first_conv = timm.models.get_pretrained_cfg(encoder).first_conv
    return dict(url="", num_classes=0, input_size=(3, 256, 256), crop_pct=0.875, interpolation="bilinear",
                mean=timm.data.IMAGENET_DEFAULT_MEAN, std=timm.data.IMAGENET_DEFAULT_STD,
                first_conv=f"encoder.{first_conv}", classifier="head")


default_cfgs = generate_default_cfgs({f"cpc_{encoder}": _cfg(encoder) for encoder in ENCODERS})


def _create(encoder: str, pretrained: bool, patch_size: int = 64, stride: int = 32, **kwargs) -> PatchModel:
    return build_model_with_cfg(PatchModel, f"cpc_{encoder}", pretrained, encoder=encoder, patch_size=patch_size,
                                stride=stride, **kwargs)


@register_model
def cpc_resnet18(pretrained: bool = False, **kwargs) -> PatchModel:
    """ResNet-18 on every patch."""
    return _create("resnet18", pretrained, **kwargs)


@register_model
def cpc_resnet50(pretrained: bool = False, **kwargs) -> PatchModel:
    """ResNet-50 on every patch."""
    return _create("resnet50", pretrained, **kwargs)


@register_model
def cpc_resnetv2_18(pretrained: bool = False, **kwargs) -> PatchModel:
    """Pre-activation ResNet-18 on every patch (the small sibling of the paper's encoder)."""
    return _create("resnetv2_18", pretrained, **kwargs)


@register_model
def cpc_resnetv2_50(pretrained: bool = False, **kwargs) -> PatchModel:
    """Pre-activation ResNet-50 on every patch."""
    return _create("resnetv2_50", pretrained, **kwargs)


@register_model
def cpc_resnetv2_101(pretrained: bool = False, **kwargs) -> PatchModel:
    """Pre-activation ResNet-101 on every patch: CPC v1's encoder (with layers=[3, 4, 23],
    channels=[256, 512, 1024] it stops after the third block, 1024-d per patch, as the paper does)."""
    return _create("resnetv2_101", pretrained, **kwargs)
