"""A backbone with the first layer of SimCLR v2's projection head (Chen et al. 2020b, Sec. 2): the
representation the paper fine-tunes from when labels are few.

SimCLR v2 pre-trains with a 3-layer projection head and, instead of throwing the head away, fine-tunes
"from the middle layer of the projection head" (its first layer: Linear without bias, BatchNorm,
ReLU; the authors' ``--ft_proj_selector=1``). :class:`Projected` is that network as a timm model:
``forward`` gives the layer's output [B, width], and ``num_classes=N`` adds the classifier on top.

Importing this module registers ``simclrv2_resnet18``, ``simclrv2_resnet50``, ... with timm, so
``zoo.load(NAME, num_classes=N)`` and ``timm.create_model("local-dir:FOLDER", pretrained=True)``
rebuild it; its ``model_args`` go to the backbone. The state dict is the backbone's keys under
``backbone.`` and the head layer's under ``projection.`` (``0`` the Linear, ``1`` the BatchNorm).
"""
from __future__ import annotations

from functools import partial

import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, register_model, resolve_pretrained_cfg
from torch import nn

BACKBONES = ("resnet18", "resnet50", "resnet101", "resnet152")  # the depths SimCLR v2 trained (and ours)


def projection_layer(width: int) -> nn.Sequential:
    """One hidden layer of SimCLR's projection head: Dense without bias (the BatchNorm's beta is the
    bias), BatchNorm, ReLU."""
    return nn.Sequential(nn.Linear(width, width, bias=False), nn.BatchNorm1d(width), nn.ReLU(inplace=True))


class Projected(nn.Module):
    """``backbone`` (a timm model without classifier) -> pooled features -> ``projection`` -> classifier."""

    def __init__(self, backbone: nn.Module, projection: nn.Module | None = None, num_classes: int = 0):
        super().__init__()
        self.backbone = backbone
        self.num_features = backbone.num_features
        self.projection = projection if projection is not None else projection_layer(self.num_features)
        self.in_chans = getattr(backbone, "in_chans", 3)
        self.reset_classifier(num_classes)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool is not None:
            self.backbone.reset_classifier(0, global_pool)
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """The backbone's final feature map [B, C, h, w], as timm's forward_features."""
        return self.backbone.forward_features(images)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        projected = self.projection(self.backbone.forward_head(features, pre_logits=True))
        return projected if pre_logits else self.fc(projected)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(images))


def architecture(backbone: str) -> str:
    if backbone not in BACKBONES:
        raise ValueError(f"no projected architecture is registered for {backbone!r}: zoo.projected registers "
                         f"{', '.join(BACKBONES)}. Fix: choose one of them, or add it to zoo.projected.BACKBONES.")
    return f"simclrv2_{backbone}"


def assemble(backbone_name: str, backbone: nn.Module, projection: nn.Module) -> Projected:
    """The registered architecture around modules trained elsewhere, with the pretrained_cfg timm rebuilds it from."""
    model = Projected(backbone, projection)
    model.pretrained_cfg = model.default_cfg = resolve_pretrained_cfg(architecture(backbone_name)).to_dict()
    return model


def _create(backbone: str, pretrained: bool = False, num_classes: int = 0, **kwargs) -> Projected:
    build = {k: kwargs.pop(k) for k in ("pretrained_cfg", "pretrained_cfg_overlay") if k in kwargs}
    builder = partial(lambda num_classes=0, **args: Projected(timm.create_model(backbone, num_classes=0, **args),
                                                              num_classes=num_classes))
    return build_model_with_cfg(builder, architecture(backbone), pretrained, num_classes=num_classes, **build,
                                **kwargs)


default_cfgs: dict[str, dict] = {}  # timm's register_model reads each architecture's cfg from here
for _backbone in BACKBONES:
    _name = architecture(_backbone)
    default_cfgs[_name] = dict(input_size=(3, 224, 224), crop_pct=0.875, interpolation="bicubic",
                               mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD, num_classes=0, first_conv=None,
                               classifier="fc", paper_ids="arXiv:2006.10029",
                               paper_name="Big Self-Supervised Models are Strong Semi-Supervised Learners",
                               description=f"{_backbone} with the first layer of SimCLR v2's projection head")
    _entry = partial(_create, _backbone)
    _entry.__name__, _entry.__module__ = _name, __name__
    register_model(_entry)
