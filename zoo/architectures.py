"""Architectures the zoo registers with timm, so that after ``import zoo`` the usual calls build them:
``timm.create_model("resnet18_cifar")``, and ``local-dir:`` / ``hf-hub:`` checkpoints whose config names them.
"""
from __future__ import annotations

from torch import nn
from timm.models import build_model_with_cfg, register_model
from timm.models.resnet import BasicBlock, ResNet

CIFAR10_STATS = dict(mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010))  # as lemniscate and InvaSpread

# timm reads a module's default_cfgs when register_model runs: define them before the entry points
default_cfgs = {
    "resnet18_cifar": dict(num_classes=10, input_size=(3, 32, 32), pool_size=(4, 4), crop_pct=1.0,
                           interpolation="bilinear", first_conv="conv1", classifier="fc", **CIFAR10_STATS),
}


class CifarResNet(ResNet):
    """timm's ResNet with the CIFAR stem of the InstDisc and InvaSpread code (``models/resnet_cifar.py``):
    one 3x3 stride-1 convolution and no max-pool, so a 32 x 32 image reaches ``layer1`` at 32 x 32.

    timm's model arguments cannot say this (its stems are a 7x7 or three 3x3 convolutions, the first of
    stride 2, then a pooling), so the stem is replaced after construction; the keys stay timm's.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        width = self.bn1.num_features
        self.conv1 = nn.Conv2d(self.in_chans, width, kernel_size=3, stride=1, padding=1, bias=False,
                               device=self.bn1.weight.device, dtype=self.bn1.weight.dtype)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")  # as timm's init_weights
        self.maxpool = nn.Identity()
        # the stem no longer downsamples: the stem's output is full size, every stage 4x larger than timm's
        self.feature_info = [dict(info, reduction=1 if info["module"] == "act1" else info["reduction"] // 4)
                             for info in self.feature_info]


@register_model
def resnet18_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-18 for 32 px images (the authors' CIFAR ResNet-18), every residual branch starting at full
    scale as theirs does (``zero_init_last=False`` unless given)."""
    args = dict(block=BasicBlock, layers=(2, 2, 2, 2), zero_init_last=False)
    return build_model_with_cfg(CifarResNet, "resnet18_cifar", pretrained, **{**args, **kwargs})
