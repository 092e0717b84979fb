"""SimCLR v1's colour distortion as the authors' TensorFlow code computes it (google-research/simclr at
85e8552, ``data_util.color_jitter_rand``), batched on the device.

It differs from torchvision's (and kornia's ``ColorJitter``, which SimCLR v2's code switched to) in two
ways that matter on dark images such as Fashion-MNIST's black background:

- brightness is additive, x + delta with delta ~ U(-b, b) (``tf.image.random_brightness``), where
  torchvision multiplies by a factor in [1 - b, 1 + b] and so leaves black black;
- contrast scales about each channel's own mean (``tf.image.adjust_contrast``), where torchvision
  blends with the mean of the grey image.

Saturation (HSV) and hue are the same in both. As there, each image draws its own order of the four
steps and the result is clipped to [0, 1] after every step; the whole distortion applies with ``p``.
"""
from __future__ import annotations

import math

import torch
from kornia.enhance import adjust_hue, adjust_saturation
from torch import nn


class ColourJitterTF(nn.Module):
    def __init__(self, brightness: float, contrast: float, saturation: float, hue: float, p: float = 0.8):
        super().__init__()
        self.brightness, self.contrast, self.saturation, self.hue, self.p = brightness, contrast, saturation, hue, p

    def steps(self, n: int, device) -> list:
        """Each step as (its function of (images, per-image factor), the factors of ``n`` images); a step of
        strength 0 is left out, as the authors' code skips it."""
        def uniform(low, high):
            return torch.empty(n, device=device).uniform_(low, high)

        def per_image(t):
            return t.view(-1, 1, 1, 1)

        out = []
        if self.brightness:
            out.append((lambda x, d: x + per_image(d), uniform(-self.brightness, self.brightness)))
        if self.contrast:
            def contrast(x, f):
                mean = x.mean(dim=(2, 3), keepdim=True)
                return (x - mean) * per_image(f) + mean
            out.append((contrast, uniform(1 - self.contrast, 1 + self.contrast)))
        if self.saturation:
            out.append((adjust_saturation, uniform(1 - self.saturation, 1 + self.saturation)))
        if self.hue:  # a fraction of a turn, as tf.image.random_hue's max_delta; kornia takes radians
            out.append((lambda x, d: adjust_hue(x, d * 2 * math.pi), uniform(-self.hue, self.hue)))
        return out

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images``: float RGB in [0, 1], [B, 3, H, W]."""
        n = len(images)
        steps = self.steps(n, images.device)
        applied = torch.rand(n, device=images.device) < self.p
        order = torch.rand(n, len(steps), device=images.device).argsort(dim=1)  # each image its own order
        out = images.clone()
        for position in range(len(steps)):
            for i, (step, factors) in enumerate(steps):
                chosen = applied & (order[:, position] == i)
                if chosen.any():
                    out[chosen] = step(out[chosen], factors[chosen]).clamp(0, 1)
        return out
