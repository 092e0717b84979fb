"""SimCLR's colour distortion as the authors' TensorFlow code computes it (google-research/simclr,
``data_util.color_jitter_rand`` at 85e8552 for v1, ``tf2/data_util.py`` for v2), batched on the device.

It differs from torchvision's (``train.batch_transforms.ColorJitter``, MoCo v2's) in ways that matter on RGB
images and, for v1's brightness, on dark ones such as Fashion-MNIST's black background:

- brightness: v1 adds delta ~ U(-b, b) (``tf.image.random_brightness``), so black turns grey; v2's code
  (``impl='simclrv2'``, its only change to the distortion) multiplies by a factor in [max(0, 1 - b), 1 + b],
  as torchvision does, which leaves black black;
- contrast scales about each channel's own mean (``tf.image.adjust_contrast``), where torchvision
  blends with the mean of the grey image;
- saturation scales HSV's s (``tf.image.adjust_saturation``), where torchvision blends with the grey image.

Hue is the same in both. As there, each image draws its own order of the four steps and the result is
clipped to [0, 1] after every step; the whole distortion applies with ``p``. Batched without a host sync
(``train.batch_transforms.in_random_order``). On grey images (one channel) v2's distortion and torchvision's
draw the same images: saturation and hue leave them as they are, and one channel's mean is the grey mean.

SimCLR's crop boxes are TensorFlow's too (``train.batch_transforms.distorted_crop_boxes``), resized bilinearly
on the device (TF: bicubically; image files cut on CPU workers are resized bicubically), and so is the
ImageNet recipe's blur (``batch_random_blur``: one sigma for the batch, zero padding), as the TF1 code's
``model.py`` applies it (the TF2 code defines it and never calls it).
"""
from __future__ import annotations

import torch
from torch import nn

from .batch_transforms import adjust_hue, chance, hsv_to_rgb, in_random_order, per_image, rgb_to_hsv, uniform


def adjust_saturation(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """HSV's saturation times each image's factor, clipped to [0, 1] (``tf.image.adjust_saturation``)."""
    if images.shape[1] == 1:  # grey: no saturation
        return images
    hue, saturation, value = rgb_to_hsv(images)
    return hsv_to_rgb(hue, (saturation * factors.view(-1, 1, 1)).clamp(0, 1), value)


class ColourJitterTF(nn.Module):
    IMPLS = ("simclrv1", "simclrv2")  # the authors' switch: additive or multiplicative brightness

    def __init__(self, brightness: float, contrast: float, saturation: float, hue: float, p: float = 0.8,
                 impl: str = "simclrv1"):
        super().__init__()
        if impl not in self.IMPLS:
            raise ValueError(f"impl is one of {', '.join(self.IMPLS)} (the authors' switch), not {impl!r}")
        self.impl = impl
        self.brightness, self.contrast, self.saturation, self.hue, self.p = brightness, contrast, saturation, hue, p

    def steps(self, n: int, device, grey: bool = False) -> list:
        """Each step as (its function of (images, per-image factor), the factors of ``n`` images); a step of
        strength 0 is left out, as the authors' code skips it, and so are saturation and hue on ``grey``
        images, which they leave as they are (only the order of the other two matters then)."""
        out = []
        if self.brightness and self.impl == "simclrv1":  # x + delta
            out.append((lambda x, d: x + per_image(d), uniform(n, -self.brightness, self.brightness, device)))
        elif self.brightness:  # x * factor
            out.append((lambda x, f: x * per_image(f), uniform(n, max(0.0, 1 - self.brightness), 1 + self.brightness,
                                                               device)))
        if self.contrast:
            def contrast(x, f):
                mean = x.mean(dim=(2, 3), keepdim=True)
                return (x - mean) * per_image(f) + mean
            out.append((contrast, uniform(n, 1 - self.contrast, 1 + self.contrast, device)))
        if self.saturation and not grey:
            out.append((adjust_saturation, uniform(n, 1 - self.saturation, 1 + self.saturation, device)))
        if self.hue and not grey:  # a fraction of a turn, as tf.image.random_hue's max_delta
            out.append((adjust_hue, uniform(n, -self.hue, self.hue, device)))
        return out

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images``: float RGB or grey in [0, 1], [B, 3 or 1, H, W]."""
        steps = [(lambda x, f, step=step: step(x, f).clamp(0, 1), factors)  # clipped after every step, as TF
                 for step, factors in self.steps(len(images), images.device, grey=images.shape[1] == 1)]
        return torch.where(per_image(chance(len(images), self.p, images.device)), in_random_order(images, steps),
                           images)
