"""Two-stream models (CMC, Tian et al. 2019): one timm backbone per view of an RGB image, as timm architectures.

CMC encodes two views of each image with two networks and represents the image by both
networks' pooled features side by side. :class:`TwoStream` takes what timm's transform from
its ``pretrained_cfg`` gives (normalised RGB), undoes that normalisation, makes the two views
and runs one stream on each; ``forward`` returns ``[B, num_features]``, the two pooled
features concatenated. The views (``VIEWS``):

- ``lab``: the L channel (1) and the ab channels (2) of CIE Lab under D65, computed as
  skimage's ``rgb2lab`` that the authors used, normalised as their ``train_CMC.py`` does.
  Streams ``l`` and ``ab`` (the authors' ``l_to_ab`` and ``ab_to_l``).
- ``frequency``: for grayscale data (Fashion-MNIST has no colour, so its ab channels are empty
  and an L/ab contrast has nothing to learn): the grey image blurred (low-pass, 1 channel) and
  the grey image minus its blur (high-pass, 1 channel); they sum back to the image.
  Streams ``low`` and ``high``. Not in the paper: our choice of two complementary views that
  a grayscale image has.

Importing this module registers ``cmc_resnet18``, ``cmc_resnet50``, ``cmc_resnet101`` (Lab views) and
``cmc_frequency_resnet18`` ... (frequency views) with timm, so after ``import zoo``
``timm.create_model("local-dir:FOLDER", pretrained=True)`` and ``hf-hub:`` names build them; their
``model_args`` (e.g. the authors' half width, ``channels: [32, 64, 128, 256]``) go to both streams.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, register_model, resolve_pretrained_cfg
from torch import nn
from torch.nn import functional as F

# skimage's rgb2lab: sRGB (D65) -> linear RGB -> XYZ -> Lab with the D65 2-degree white point
XYZ_FROM_RGB = ((0.412453, 0.357580, 0.180423),
                (0.212671, 0.715160, 0.072169),
                (0.019334, 0.119193, 0.950227))
D65_WHITE = (0.95047, 1.0, 1.08883)
# train_CMC.py: each channel centred on the middle of its range over sRGB and scaled by half the range
# (L 0..100, a -86.183..98.233, b -107.857..94.478)
LAB_MEAN = (50.0, 6.025, -6.6895)
LAB_STD = (50.0, 92.208, 101.1675)
BLUR_SIGMA = 1 / 16  # of the image side: 2 pixels at 32 px, 14 at 224 (part of the architecture: changing it
# changes what every frequency checkpoint computes)
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as torchvision's rgb_to_grayscale


def weighted(images: torch.Tensor, matrix, divisors) -> torch.Tensor:
    """Output channel i = sum_j matrix[i][j] image_j / divisors[i]. The constants stay Python numbers: a
    tensor made of them would be a blocking copy to the GPU at every call."""
    channels = images.unbind(1)
    return torch.stack([sum(w * c for w, c in zip(row, channels)) / d for row, d in zip(matrix, divisors)], dim=1)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] sRGB in [0, 1] -> CIE Lab (L in [0, 100]), in float32 whatever the autocast."""
    with torch.autocast(rgb.device.type, enabled=False):
        rgb = rgb.float().clamp(0, 1)
        linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055).pow(2.4), rgb / 12.92)
        xyz = weighted(linear, XYZ_FROM_RGB, D65_WHITE)
        f = torch.where(xyz > 0.008856, xyz.clamp(min=0.008856).pow(1 / 3), 7.787 * xyz + 16 / 116)
        fx, fy, fz = f.unbind(1)
        return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=1)


def lab_views(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L [B, 1, H, W], ab [B, 2, H, W]), normalised as the authors' loader."""
    lab = torch.stack([(c - m) / s for c, m, s in zip(rgb_to_lab(rgb).unbind(1), LAB_MEAN, LAB_STD)], dim=1)
    return lab.split([1, 2], dim=1)


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [B, 1, H, W], edges replicated (any image size)."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, device=image.device, dtype=image.dtype)
    kernel = torch.exp(-t ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    image = F.pad(image, (radius,) * 4, mode="replicate")
    return F.conv2d(F.conv2d(image, kernel.view(1, 1, 1, -1)), kernel.view(1, 1, -1, 1))


def split_frequencies(grey: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) of [B, 1, H, W]: its blur and what the blur removed, so low + high == grey."""
    low = gaussian_blur(grey, BLUR_SIGMA * min(grey.shape[-2:]))
    return low, grey - low


def frequency_views(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) of the grey image, each [B, 1, H, W], scaled as L is (x 2, the low-pass centred)."""
    with torch.autocast(rgb.device.type, enabled=False):
        low, high = split_frequencies(weighted(rgb.float().clamp(0, 1), (LUMA,), (1.0,)))
        return 2 * low - 1, 2 * high


@dataclass(frozen=True)
class Views:
    """How a TwoStream sees an image: its streams' names, their input channels and the split."""

    streams: tuple[str, str]
    channels: tuple[int, int]
    split: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


VIEWS = {"lab": Views(("l", "ab"), (1, 2), lab_views),
         "frequency": Views(("low", "high"), (1, 1), frequency_views)}


def check_views(views: str) -> Views:
    if views not in VIEWS:
        raise ValueError(f"views must be one of {', '.join(VIEWS)} (lab for colour images, frequency for "
                         f"grayscale ones), not {views!r}")
    return VIEWS[views]


class TwoStream(nn.Module):
    """Normalised RGB [B, 3, H, W] -> the two views -> one backbone each -> their pooled features side by side.

    ``first`` and ``second`` are timm backbones without classifiers taking ``VIEWS[views].channels``
    input channels; ``mean`` and ``std`` are the RGB normalisation of the input (the pretrained_cfg's).
    The state dict holds each stream's own keys under its name (``l.``, ``ab.``; ``low.``, ``high.``).
    """

    def __init__(self, first: nn.Module, second: nn.Module, views: str = "lab", num_classes: int = 0,
                 mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD):
        super().__init__()
        self.views = check_views(views)
        self.names = self.views.streams
        self.add_module(self.names[0], first)
        self.add_module(self.names[1], second)
        self.in_chans = 3
        self.num_features = first.num_features + second.num_features
        # not saved: they are the pretrained_cfg's mean and std, rebuilt from config.json at load
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.reset_classifier(num_classes)

    @property
    def streams(self) -> tuple[nn.Module, nn.Module]:
        return getattr(self, self.names[0]), getattr(self, self.names[1])

    def split(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two views of RGB in [0, 1] (what training augments); ``forward`` undoes the normalisation first."""
        return self.views.split(rgb)

    def unnormalize(self, images: torch.Tensor) -> torch.Tensor:
        return images.float() * self.std + self.mean

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool is not None:
            for stream in self.streams:
                stream.reset_classifier(0, global_pool)
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Both streams' final feature maps, stacked along channels: [B, num_features, h, w]."""
        views = self.split(self.unnormalize(images))
        return torch.cat([stream.forward_features(view) for stream, view in zip(self.streams, views)], dim=1)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        maps = features.split([stream.num_features for stream in self.streams], dim=1)
        pooled = torch.cat([stream.forward_head(m, pre_logits=True) for stream, m in zip(self.streams, maps)], dim=1)
        return pooled if pre_logits else self.head(pooled)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(images))


STREAMS = ("resnet18", "resnet50", "resnet101")  # the depths of the authors' CMC ResNets


def architecture(stream: str, views: str) -> str:
    """The registered name of the TwoStream of ``stream`` backbones on ``views``, e.g. ``cmc_resnet50``."""
    check_views(views)
    if stream not in STREAMS:
        raise ValueError(f"no two-stream architecture is registered for {stream!r}: zoo.streams registers "
                         f"{', '.join(STREAMS)}. Fix: choose one of them, or add it to zoo.streams.STREAMS.")
    return f"cmc_{stream}" if views == "lab" else f"cmc_{views}_{stream}"


def _pretrained_cfg(stream: str, views: str) -> dict:
    return dict(input_size=(3, 224, 224), crop_pct=0.875, interpolation="bilinear", mean=IMAGENET_DEFAULT_MEAN,
                std=IMAGENET_DEFAULT_STD, num_classes=0, first_conv=None, classifier="head",
                paper_ids="arXiv:1906.05849", paper_name="Contrastive Multiview Coding",
                description=f"CMC two-stream {stream}: {views} views, {' + '.join(VIEWS[views].streams)}")


def assemble(stream: str, views: str, first: nn.Module, second: nn.Module, mean, std) -> TwoStream:
    """The registered architecture around streams built elsewhere (training makes them with its preset),
    carrying the pretrained_cfg that ``zoo.checkpoint.save`` writes and timm rebuilds it from."""
    name = architecture(stream, views)
    model = TwoStream(first, second, views, mean=mean, std=std)
    cfg = resolve_pretrained_cfg(name, pretrained_cfg_overlay=dict(mean=tuple(mean), std=tuple(std))).to_dict()
    model.pretrained_cfg = model.default_cfg = cfg
    return model


def _build(stream: str, views: str, mean, std, num_classes: int = 0, in_chans: int = 3, **stream_args) -> TwoStream:
    if in_chans != 3:
        raise ValueError(f"a two-stream CMC model takes RGB images (in_chans=3), not in_chans={in_chans}: "
                         "it makes its own views")
    first, second = (timm.create_model(stream, num_classes=0, in_chans=c, **stream_args)
                     for c in check_views(views).channels)
    return TwoStream(first, second, views, num_classes, mean, std)


def _create(stream: str, views: str, pretrained: bool = False, pretrained_cfg=None, pretrained_cfg_overlay=None,
            **kwargs) -> TwoStream:
    """timm's entry point: the input normalisation is the resolved pretrained_cfg's, so a checkpoint's
    config.json says what the model undoes."""
    name = architecture(stream, views)
    cfg = resolve_pretrained_cfg(name, pretrained_cfg, pretrained_cfg_overlay).to_dict()
    return build_model_with_cfg(partial(_build, stream, views, cfg["mean"], cfg["std"]), name, pretrained,
                                pretrained_cfg=cfg, **kwargs)


def _register(stream: str, views: str) -> None:
    name = architecture(stream, views)
    default_cfgs[name] = _pretrained_cfg(stream, views)
    entry = partial(_create, stream, views)
    entry.__name__, entry.__module__ = name, __name__  # what timm's registry files it under
    register_model(entry)


default_cfgs: dict[str, dict] = {}  # timm's register_model reads each architecture's cfg from here
for _stream, _views in itertools.product(STREAMS, VIEWS):
    _register(_stream, _views)
