"""Architectures the zoo registers with timm, so that after ``import zoo`` the usual calls build them:
``timm.create_model("resnet18_cifar")``, and ``local-dir:`` / ``hf-hub:`` checkpoints whose config names them.
"""
from __future__ import annotations

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import Conv2dSame
from timm.layers.pool2d_same import MaxPool2dSame
from timm.models import build_model_with_cfg, register_model
from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from torch import nn

CIFAR10_STATS = dict(mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010))  # as lemniscate and InvaSpread

# timm reads a module's default_cfgs when register_model runs: define them before the entry points
default_cfgs = {
    "resnet18_cifar": dict(num_classes=10, input_size=(3, 32, 32), pool_size=(4, 4), crop_pct=1.0,
                           interpolation="bilinear", first_conv="conv1", classifier="fc", **CIFAR10_STATS),
    **{name: dict(num_classes=1000, input_size=(3, 224, 224), pool_size=(7, 7), crop_pct=0.875,
                  interpolation="bilinear", first_conv="conv1", classifier="fc", mean=IMAGENET_DEFAULT_MEAN,
                  std=IMAGENET_DEFAULT_STD)
       for name in ("resnet50_samepool", "resnet50_same")},
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


class SamePaddedResNet(ResNet):
    """timm's ResNet padded TensorFlow's 'SAME' way where the authors' framework did, for the releases
    converted from TensorFlow (SimCLR) and JAX/Haiku (BYOL): same keys, same weights, the source's features.

    'SAME' pads a layer of kernel k and stride s on an input of size n by max((ceil(n/s) - 1) s + k - n, 0),
    the odd pixel after the input: a 3x3 stride-2 layer on an even size gets 0 before and 1 after, where
    timm pads 1 and 1, so the same weights would look at windows shifted by one pixel. SimCLR's resnet.py
    pads every convolution explicitly and symmetrically (``fixed_padding``, as timm) but its max pool 'SAME'
    (``same="pool"``); Haiku pads every layer 'SAME' (``same="all"``); stride-1 and 1x1 layers pad alike
    in both conventions, so only the strided ones are swapped.
    """

    def __init__(self, *args, same: str = "pool", **kwargs):
        if same not in ("pool", "all"):
            raise ValueError(f"same must be 'pool' or 'all', not {same!r}")
        super().__init__(*args, **kwargs)
        self.maxpool = MaxPool2dSame(kernel_size=3, stride=2)
        if same == "all":
            for parent in list(self.modules()):
                for name, conv in parent.named_children():
                    if type(conv) is nn.Conv2d and conv.stride != (1, 1) and conv.kernel_size != (1, 1):
                        setattr(parent, name, same_conv(conv))


def same_conv(conv: nn.Conv2d) -> Conv2dSame:
    """``conv`` padding 'SAME', holding the same parameters."""
    out = Conv2dSame(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0, conv.dilation,
                     conv.groups, conv.bias is not None, device=conv.weight.device, dtype=conv.weight.dtype)
    out.weight, out.bias = conv.weight, conv.bias
    return out


@register_model
def resnet50_samepool(pretrained: bool = False, **kwargs) -> SamePaddedResNet:
    """ResNet-50 as SimCLR's TensorFlow code pads it: the max pool 'SAME', the convolutions as timm's."""
    args = dict(block=Bottleneck, layers=(3, 4, 6, 3), same="pool")
    return build_model_with_cfg(SamePaddedResNet, "resnet50_samepool", pretrained, **{**args, **kwargs})


@register_model
def resnet50_same(pretrained: bool = False, **kwargs) -> SamePaddedResNet:
    """ResNet-50 as Haiku pads it (BYOL): the stem, every strided convolution and the max pool 'SAME'."""
    args = dict(block=Bottleneck, layers=(3, 4, 6, 3), same="all")
    return build_model_with_cfg(SamePaddedResNet, "resnet50_same", pretrained, **{**args, **kwargs})
