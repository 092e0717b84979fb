"""Batched augmentation on the training device (kornia): one call transforms a whole batch.

Per-image PIL pipelines cannot keep two CPU cores, let alone a GPU, busy; these take
uint8 batches [B, C, H, W] (C = 1 or 3) and return normalised float RGB batches.
"""
from __future__ import annotations

import kornia.augmentation as K
import torch
from torch import nn
from torch.nn import functional as F


def to_rgb_float(images: torch.Tensor) -> torch.Tensor:
    images = images.float() / 255
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


class Preprocess(nn.Module):
    """The evaluation transform, as timm's with ``crop_pct``: resize to size / crop_pct, centre-crop
    ``size``, normalise. It is what the exported pretrained_cfg tells users to do."""

    def __init__(self, size: int, mean, std, crop_pct: float = 1.0):
        super().__init__()
        self.size, self.resize = size, round(size / crop_pct)
        self.normalize = K.Normalize(torch.tensor(mean), torch.tensor(std))

    def forward(self, images):
        images = to_rgb_float(images)
        if images.shape[-2:] != (self.resize, self.resize):
            images = F.interpolate(images, size=(self.resize, self.resize), mode="bilinear", antialias=True)
        top = (self.resize - self.size) // 2
        return self.normalize(images[..., top:top + self.size, top:top + self.size])


class InstanceAugment(nn.Module):
    """Wu et al. 2018 (lemniscate): random resized crop (scale 0.2-1), grayscale p=0.2,
    colour jitter 0.4, horizontal flip. MoCo v1 uses the same pipeline."""

    def __init__(self, size: int, mean, std, scale=(0.2, 1.0)):
        super().__init__()
        self.ops = nn.Sequential(
            K.RandomResizedCrop((size, size), scale=scale),
            K.RandomGrayscale(p=0.2),
            K.ColorJitter(0.4, 0.4, 0.4, 0.4, p=1.0),
            K.RandomHorizontalFlip(),
            K.Normalize(torch.tensor(mean), torch.tensor(std)),
        )

    def forward(self, images):
        return self.ops(to_rgb_float(images))
