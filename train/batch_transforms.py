"""Random image transforms of a whole batch, each image with its own parameters, drawn on the batch's
device: torchvision's transforms as the authors' pipelines use them, written as a few tensor ops per batch.

A view maker runs on the device that trains (``train.augment``), where every tensor op is a kernel
launch and a host sync stalls the queue. So nothing here loops over images, indexes with a mask, reads
a value back or copies host values over (constants are Python numbers in the arithmetic): an image
that does not draw a transform is kept by one ``torch.where`` or gets its identity parameters (a
centred delta kernel).

Images are float [N, C, H, W] in [0, 1], RGB (C = 3) or grey (C = 1). A grey batch stays one channel:
it has no saturation or hue to change and greying leaves it as it is, so those steps return it (what
they compute on its three equal channels), and the other steps do a third of the work; ``Normalize``
with three means broadcasts it to RGB at the end. Fashion-MNIST's views are made so.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

GREY = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision's rgb_to_grayscale


def uniform(n: int, low: float, high: float, device) -> torch.Tensor:
    return torch.empty(n, device=device).uniform_(low, high)


def chance(n: int, p: float, device) -> torch.Tensor:
    """Which of ``n`` images draw a transform applied with probability ``p`` (bool [n])."""
    return torch.rand(n, device=device) < p


def per_image(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


# --- geometry -------------------------------------------------------------------------------------------


def resized_crop_boxes(n: int, height: int, width: int, scale, ratio, device, tries: int = 10) -> torch.Tensor:
    """torchvision's ``RandomResizedCrop.get_params`` for ``n`` images at once: boxes [n, 4] (left, top,
    width, height, in pixels). Each image makes ``tries`` draws of an area fraction in ``scale`` and a
    log-uniform aspect in ``ratio`` and keeps its first that fits; one with none takes the centre crop of
    the whole image clamped to ``ratio``."""
    area = height * width * torch.empty(n, tries, device=device).uniform_(*scale)
    aspect = torch.exp(torch.empty(n, tries, device=device).uniform_(math.log(ratio[0]), math.log(ratio[1])))
    w, h = torch.sqrt(area * aspect).round(), torch.sqrt(area / aspect).round()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.int().argmax(dim=1, keepdim=True)  # the first fitting draw (0 when none fits)
    w, h, found = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0], fits.any(dim=1)
    if width / height < min(ratio):
        fallback = (width, round(width / min(ratio)))
    elif width / height > max(ratio):
        fallback = (round(height * max(ratio)), height)
    else:
        fallback = (width, height)
    w, h = torch.where(found, w, fallback[0]), torch.where(found, h, fallback[1])
    left = torch.where(found, torch.floor(torch.rand(n, device=device) * (width - w + 1)), (width - w) // 2)
    top = torch.where(found, torch.floor(torch.rand(n, device=device) * (height - h + 1)), (height - h) // 2)
    return torch.stack([left, top, w, h], dim=1)


def distorted_crop_boxes(n: int, height: int, width: int, scale, ratio, device, tries: int = 100,
                         covered: float = 0.1) -> torch.Tensor:
    """TensorFlow's ``sample_distorted_bounding_box`` as SimCLR's ``crop_and_resize`` calls it (the whole image
    is the object to cover), for ``n`` images at once: boxes [n, 4] as :func:`resized_crop_boxes` gives them.

    Each try draws an aspect w / h uniformly in ``ratio`` (torchvision: log-uniformly), then an integer height
    uniformly between the rounded heights of the smallest and the largest area of ``scale`` at that aspect (the
    largest capped so that the box fits), and w = round(h x aspect), one pixel taller, then shorter, when the
    rounding left the area outside ``scale``. The first try that fits and covers at least ``covered`` of the
    image is kept; with none, the whole image. The height, not the area, is uniform: crops are small more often
    than torchvision's (area density ~ 1 / sqrt(area)), and none is under ``covered``. Offsets are TF's, uniform
    in [0, W - w), so only a crop as wide as the image touches its right edge (and likewise at the bottom)."""
    area = float(height * width)
    low, high = scale[0] * area, scale[1] * area
    aspect = torch.empty(n, tries, device=device).uniform_(*ratio)
    h, top_h = torch.sqrt(low / aspect).round(), torch.sqrt(high / aspect).round()
    narrower = torch.floor((width + 0.5 - 1e-7) / aspect)  # the tallest box whose rounded width fits
    narrower = torch.where((narrower * aspect).round() > width, narrower - 1, narrower)
    top_h = torch.where((top_h * aspect).round() > width, narrower, top_h).clamp(max=height)
    h = torch.minimum(h, top_h)
    h = h + torch.floor(torch.rand(n, tries, device=device) * (top_h - h + 1))
    w = (h * aspect).round()
    h = torch.where(w * h < low, h + 1, h)  # rounding fixes, in TF's order
    w = (h * aspect).round()
    h = torch.where(w * h > high, h - 1, h)
    w = (h * aspect).round()
    fits = (w * h >= max(low, covered * area)) & (w * h <= high) & (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.int().argmax(dim=1, keepdim=True)
    found = fits.any(dim=1)
    w = torch.where(found, w.gather(1, first)[:, 0], float(width))
    h = torch.where(found, h.gather(1, first)[:, 0], float(height))
    left = torch.floor(torch.rand(n, device=device) * (width - w))
    top = torch.floor(torch.rand(n, device=device) * (height - h))
    return torch.stack([left, top, w, h], dim=1)


def resized_crop(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Each image's box resized to ``size`` x ``size`` by bilinear sampling, in one ``grid_sample`` for the batch:
    output pixel c samples the input at x = left + (c + 1/2) w / size (pixel edges at integers, as torchvision's
    resize), clamped to the box's edge pixels' centres, which repeat outward as a crop then a resize does.
    Without antialiasing, as the views enlarge their crops (Fashion-MNIST's 28 px to 32): a box larger than
    ``size`` aliases. The grid is built by broadcasting, not a matrix product, so an autocast around the
    views leaves it in float32."""
    n, _, height, width = images.shape
    left, top, w, h = boxes.to(torch.float32).unbind(1)
    centres = (torch.arange(size, device=images.device, dtype=torch.float32) + 0.5) / size

    def normalised(start, extent, side):  # [n, size] in grid_sample's [-1, 1], align_corners=False
        pixels = start.view(-1, 1) + extent.view(-1, 1) * centres
        pixels = torch.minimum(torch.maximum(pixels, (start + 0.5).view(-1, 1)), (start + extent - 0.5).view(-1, 1))
        return 2 * pixels / side - 1

    x, y = normalised(left, w, width), normalised(top, h, height)
    grid = torch.stack([x.view(n, 1, size).expand(n, size, size), y.view(n, size, 1).expand(n, size, size)], dim=3)
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="border", align_corners=False)


SAMPLERS = {"torchvision": resized_crop_boxes, "tensorflow": distorted_crop_boxes}


class RandomResizedCrop(nn.Module):
    """torchvision's ``RandomResizedCrop(size, scale, ratio)`` for a batch; with ``sampler="tensorflow"`` the
    boxes are TensorFlow's (:func:`distorted_crop_boxes`), as SimCLR's code draws them."""

    def __init__(self, size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), sampler: str = "torchvision"):
        super().__init__()
        self.size, self.scale, self.ratio, self.boxes = size, tuple(scale), tuple(ratio), SAMPLERS[sampler]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n, _, height, width = images.shape
        boxes = self.boxes(n, height, width, self.scale, self.ratio, images.device)
        return resized_crop(images, boxes, self.size)


class RandomHorizontalFlip(nn.Module):
    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = p

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.where(per_image(chance(len(images), self.p, images.device)), images.flip(-1), images)


# --- colour ---------------------------------------------------------------------------------------------


def grey(images: torch.Tensor) -> torch.Tensor:
    """Luma [N, 1, H, W] of RGB images (a grey image is its own)."""
    if images.shape[1] == 1:
        return images
    r, g, b = images.unbind(1)
    return (GREY[0] * r + GREY[1] * g + GREY[2] * b).unsqueeze(1)


def blend(images: torch.Tensor, other: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """factor * image + (1 - factor) * other, clipped to [0, 1]: torchvision's ``_blend``."""
    return torch.lerp(other, images, per_image(factors)).clamp(0, 1)


def adjust_brightness(images, factors):
    return (images * per_image(factors)).clamp(0, 1)


def adjust_contrast(images, factors):
    """Blend with the mean of each image's luma (torchvision)."""
    return blend(images, grey(images).mean(dim=(1, 2, 3), keepdim=True), factors)


def adjust_saturation(images, factors):
    if images.shape[1] == 1:
        return images
    return blend(images, grey(images), factors)


def rgb_to_hsv(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hue in [0, 6) (the hexcone's sector: the max channel fixes it, the other two its offset), saturation
    and value, each [N, H, W]."""
    r, g, b = images.unbind(1)
    value, top = images.max(dim=1)
    chroma = value - images.min(dim=1).values
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    hue = torch.where(top == 0, (g - b) / safe, torch.where(top == 1, (b - r) / safe + 2, (r - g) / safe + 4))
    saturation = chroma / torch.where(value > 0, value, torch.ones_like(value))
    return torch.remainder(hue, 6), saturation, value


def hsv_to_rgb(hue: torch.Tensor, saturation: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Channel n of (r, g, b) = (5, 3, 1) is v - v s clamp(min(k, 4 - k), 0, 1), k = (n + hue) mod 6."""
    k = torch.stack([torch.remainder(hue + n, 6) for n in (5, 3, 1)], dim=1)
    value = value.unsqueeze(1)
    return value - value * saturation.unsqueeze(1) * torch.minimum(k, 4 - k).clamp(0, 1)


def adjust_hue(images: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Rotate each image's hue by ``shifts``, fractions of a turn."""
    if images.shape[1] == 1:
        return images
    hue, saturation, value = rgb_to_hsv(images)
    return hsv_to_rgb(hue + 6 * shifts.view(-1, 1, 1), saturation, value)


def in_random_order(images: torch.Tensor, steps: list) -> torch.Tensor:
    """``steps``, each (function of (images, per-image factors), factors), applied to each image in an order it
    draws: at each position every step runs on the whole batch and is kept where it is that image's step there.
    len(steps)^2 passes, but no host sync (a subset per step would index by a mask)."""
    order = torch.rand(len(images), len(steps), device=images.device).argsort(dim=1)
    out = images
    for position in range(len(steps)):
        for i, (step, factors) in enumerate(steps):
            out = torch.where(per_image(order[:, position] == i), step(out, factors), out)
    return out


class ColorJitter(nn.Module):
    """torchvision's ``ColorJitter(brightness, contrast, saturation, hue)`` applied with probability ``p``
    (``RandomApply``), as MoCo v2's and SimCLR v2's code: factors uniform in [1 - x, 1 + x], a hue shift
    in [-hue, hue], the four in an order each image draws. A grey batch skips saturation and hue, which
    leave it as it is."""

    def __init__(self, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, p: float = 1.0):
        super().__init__()
        self.brightness, self.contrast, self.saturation, self.hue, self.p = brightness, contrast, saturation, hue, p

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n, device, colour = len(images), images.device, images.shape[1] == 3
        steps = [(step, uniform(n, max(0.0, 1 - x), 1 + x, device)) for step, x in
                 ((adjust_brightness, self.brightness), (adjust_contrast, self.contrast),
                  (adjust_saturation, self.saturation if colour else 0)) if x]
        if self.hue and colour:
            steps.append((adjust_hue, uniform(n, -self.hue, self.hue, device)))
        return torch.where(per_image(chance(n, self.p, device)), in_random_order(images, steps), images)


class RandomGrayscale(nn.Module):
    """Luma in all three channels, with probability ``p``."""

    def __init__(self, p: float = 0.1):
        super().__init__()
        self.p = p

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] == 1:
            return images
        chosen = per_image(chance(len(images), self.p, images.device))
        return torch.where(chosen, grey(images).expand_as(images), images)


def gaussian_kernels(size: int, sigmas: torch.Tensor) -> torch.Tensor:
    """One normalised 1-d Gaussian of ``size`` taps per sigma, [n, size] (torchvision's kernel)."""
    x = torch.arange(size, device=sigmas.device, dtype=sigmas.dtype) - (size - 1) / 2
    kernels = torch.exp(-0.5 * (x / sigmas.view(-1, 1)) ** 2)
    return kernels / kernels.sum(dim=1, keepdim=True)


class RandomGaussianBlur(nn.Module):
    """Gaussian blur of a ``kernel``-tap square kernel, sigma uniform in ``sigma``, with probability ``p``.
    By default as torchvision's ``GaussianBlur``: a sigma per image, reflected borders. SimCLR's TensorFlow
    code (``batch_random_blur``) draws one sigma for the whole batch and pads with zeros ('SAME'), which
    darkens the borders: ``per_batch_sigma=True, padding="zeros"``. Two separable passes of a grouped
    convolution with one kernel per image; an image not drawn gets a centred delta."""

    def __init__(self, kernel: int, sigma=(0.1, 2.0), p: float = 0.5, per_batch_sigma: bool = False,
                 padding: str = "reflect"):
        super().__init__()
        if padding not in ("reflect", "zeros"):
            raise ValueError(f"padding is 'reflect' (torchvision's) or 'zeros' (TensorFlow's 'SAME'), not {padding!r}")
        self.kernel, self.sigma, self.p = kernel, tuple(sigma), p
        self.per_batch_sigma, self.padding = per_batch_sigma, padding

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n, c, height, width = images.shape
        sigmas = uniform(1 if self.per_batch_sigma else n, *self.sigma, images.device).expand(n)
        kernels = gaussian_kernels(self.kernel, sigmas)
        delta = (torch.arange(self.kernel, device=images.device) == self.kernel // 2).to(kernels.dtype)
        kernels = torch.where(chance(n, self.p, images.device).view(-1, 1), kernels, delta).to(images.dtype)
        weights = kernels.repeat_interleave(c, dim=0)  # [n c, kernel]: each image's kernel for its channels
        pad = self.kernel // 2
        mode = "reflect" if self.padding == "reflect" else "constant"
        with torch.autocast(images.device.type, enabled=False):  # an autocast around the views would blur in bf16
            x = F.pad(images.reshape(1, n * c, height, width), (pad, pad, pad, pad), mode=mode)
            x = F.conv2d(x, weights.view(n * c, 1, 1, self.kernel), groups=n * c)
            x = F.conv2d(x, weights.view(n * c, 1, self.kernel, 1), groups=n * c)
        return x.view(n, c, height, width)


class RandomSolarize(nn.Module):
    """Solarisation with probability ``p`` per image, as BYOL's augmentations (Grill et al. 2020, Table 6): pixels
    at or above ``threshold`` are inverted, x -> 1 - x, on images in [0, 1]."""

    def __init__(self, p: float, threshold: float = 0.5):
        super().__init__()
        self.p, self.threshold = p, threshold

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        drawn = chance(len(images), self.p, images.device).view(-1, 1, 1, 1)
        return torch.where(drawn & (images >= self.threshold), 1 - images, images)


class Normalize(nn.Module):
    """(image - mean) / std per channel; a grey batch comes out with as many channels as ``mean``."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std
