"""Views: random resized crops, then colour and flip, batched on the training device (``train.batch_transforms``).

Per-image PIL pipelines cannot keep two CPU cores, let alone a GPU, busy; these take uint8
batches [B, C, H, W] (C = 1 or 3) and return normalised float RGB batches. The random resized
crop is the one step that needs the full-resolution image, so a view maker declares its
``crops`` (one ``Crop`` per view, in order) and takes either of two inputs: a uint8 batch of
whole in-memory images (Fashion-MNIST), which it crops here on the device, or, for image files,
the list of its crops, one uint8 batch per crop, which the CPU workers cut as they decode
(``CropOnCPU``: every crop of a multi-crop recipe from the original image).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from . import batch_transforms as T


@dataclass(frozen=True)
class Crop:
    """A random resized crop: ``scale`` of the image's area, aspect ``ratio``, resized to ``size`` px, its box
    drawn as torchvision's ``RandomResizedCrop`` or, with ``sampler="tensorflow"``, as TensorFlow's
    ``sample_distorted_bounding_box`` in SimCLR's code (``train.batch_transforms.distorted_crop_boxes``)."""

    size: int
    scale: tuple = (0.08, 1.0)
    ratio: tuple = (3 / 4, 4 / 3)
    sampler: str = "torchvision"
    interpolation: str = "bilinear"  # of an image file's crop (DINO's code: "bicubic"); the in-memory warp is bilinear

    def on_device(self) -> nn.Module:
        """The crop of a whole batch as one affine warp (bilinear without antialiasing: the in-memory images are
        small, and their crops are resized up)."""
        return T.RandomResizedCrop(self.size, scale=self.scale, ratio=self.ratio, sampler=self.sampler)

    def on_cpu(self):
        """The same crop as a transform of a PIL image, to a uint8 tensor."""
        from torchvision import transforms

        resize = transforms.InterpolationMode(self.interpolation)
        crop = (transforms.RandomResizedCrop(self.size, scale=self.scale, ratio=self.ratio, interpolation=resize)
                if self.sampler == "torchvision" else DistortedCrop(self.size, self.scale, self.ratio))
        return transforms.Compose([crop, transforms.PILToTensor()])


class DistortedCrop:
    """SimCLR's crop of one PIL image in a CPU worker: TensorFlow's box, resized bicubically (``crop_and_resize``)."""

    def __init__(self, size: int, scale: tuple, ratio: tuple):
        self.size, self.scale, self.ratio = size, scale, ratio

    def __call__(self, image):
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as F_image

        box = T.distorted_crop_boxes(1, image.height, image.width, self.scale, self.ratio, "cpu")[0]
        left, top, width, height = (int(v) for v in box.tolist())
        return F_image.resized_crop(image, top, left, height, width, [self.size, self.size],
                                    InterpolationMode.BICUBIC)


class CropOnCPU:
    """A dataset transform: PIL image -> one uint8 tensor per crop, each cut from the full decoded image."""

    def __init__(self, crops: list[Crop]):
        self.crops = list(crops)
        self.transforms = [crop.on_cpu() for crop in self.crops]

    def __call__(self, image) -> list[torch.Tensor]:
        return [transform(image) for transform in self.transforms]

    def __repr__(self):
        return f"CropOnCPU({self.crops})"


def to_float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255


def to_rgb_float(images: torch.Tensor) -> torch.Tensor:
    images = to_float(images)
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


class Preprocess(nn.Module):
    """The evaluation transform, as timm's with ``crop_pct``: resize to size / crop_pct, centre-crop
    ``size``, normalise. It is what the exported pretrained_cfg tells users to do."""

    def __init__(self, size: int, mean, std, crop_pct: float = 1.0):
        super().__init__()
        self.size, self.resize = size, round(size / crop_pct)
        self.normalize = T.Normalize(mean, std)

    def forward(self, images):
        images = to_rgb_float(images)
        if images.shape[-2:] != (self.resize, self.resize):
            images = F.interpolate(images, size=(self.resize, self.resize), mode="bilinear", antialias=True)
        top = (self.resize - self.size) // 2
        return self.normalize(images[..., top:top + self.size, top:top + self.size])


class InstanceAugment(nn.Module):
    """Wu et al. 2018 (lemniscate): random resized crop (scale 0.2-1), grayscale p=0.2,
    colour jitter 0.4, horizontal flip. MoCo v1 uses the same pipeline.

    ``ops[0]`` is the crop: it runs here on whole in-memory images; for image files the CPU workers
    have taken it (``crops``) from the full-resolution image and the batch arrives as ``[crop]``.
    """

    def __init__(self, size: int, mean, std, scale=(0.2, 1.0)):
        super().__init__()
        self.crops = [Crop(size, scale)]
        self.ops = nn.Sequential(
            self.crops[0].on_device(),
            T.RandomGrayscale(p=0.2),
            T.ColorJitter(0.4, 0.4, 0.4, 0.4, p=1.0),
            T.RandomHorizontalFlip(),
            T.Normalize(mean, std),
        )

    def forward(self, images: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        if isinstance(images, torch.Tensor):
            return self.ops(to_float(images))  # a grey batch stays one channel until Normalize
        return self.ops[1:](to_float(cropped(images, self.crops)[0]))


def cropped(images: list[torch.Tensor], crops: list[Crop]) -> list[torch.Tensor]:
    """The batches of crops the CPU workers cut, checked against the crops the views expect."""
    sizes = [tuple(batch.shape[-2:]) for batch in images]
    if sizes != [(crop.size, crop.size) for crop in crops]:
        raise ValueError(f"crops of sizes {sizes} for views that take {[crop.size for crop in crops]} px crops: "
                         "cut the image files with this method's crops (train.engine.training_set)")
    return images


def blur_kernel(size: int) -> int:
    """SimCLR's Gaussian blur kernel: 10% of the image side, odd (23 px at 224)."""
    return max(3, int(size * 0.1) // 2 * 2 + 1)


class StrongAugment(nn.Module):
    """The stronger views of SimCLR (Chen et al. 2020, Appendix A) and MoCo v2 ("aug+", Chen et al. 2020b):
    random resized crop, horizontal flip, colour jitter (brightness, contrast, saturation, hue; applied in
    a random order) with probability 0.8, grayscale with probability 0.2, and Gaussian blur of sigma in
    [0.1, 2] with probability ``blur``. The recipes differ only in numbers:

    - MoCo v2: crop scale 0.2-1, jitter (0.4, 0.4, 0.4, 0.1), blur 0.5.
    - SimCLR with colour strength s: crop scale 0.08-1, jitter (0.8s, 0.8s, 0.8s, 0.2s); blur 0.5 on ImageNet
      (s = 1), none on CIFAR-10 (s = 0.5). ``tensorflow=True`` makes the crop boxes and the blur as the authors'
      TensorFlow code (``sample_distorted_bounding_box``; one sigma per batch, zero padding), whose jitter is
      passed in (``train.colour_tf``: additive brightness in v1, multiplicative in v2); MoCo v2's is torchvision's.

    - BYOL: SimCLR's recipe with jitter (0.4, 0.4, 0.2, 0.1), and two views that differ (blur 1.0 and 0.1,
      ``solarize`` 0 and 0.2); torchvision's crop boxes, a sigma per image and zero padding
      (``blur_padding="zeros"``).

    Blur commutes with neither jitter nor greying exactly, but the papers put it after both, and solarising after
    the blur, as here; the flip commutes with everything and comes last.
    """

    def __init__(self, size: int, mean, std, scale=(0.08, 1.0), jitter: nn.Module | None = None, blur: float = 0.5,
                 tensorflow: bool = False, solarize: float = 0.0, blur_padding: str | None = None,
                 interpolation: str = "bilinear"):
        super().__init__()
        self.crops = [Crop(size, scale, sampler="tensorflow" if tensorflow else "torchvision",
                           interpolation=interpolation)]
        self.jitter = jitter or colour_jitter(*simclr_jitter(1.0))
        ops = [self.crops[0].on_device(), self.jitter, T.RandomGrayscale(p=0.2)]
        if blur:
            padding = blur_padding or ("zeros" if tensorflow else "reflect")
            ops.append(T.RandomGaussianBlur(blur_kernel(size), (0.1, 2.0), p=blur, per_batch_sigma=tensorflow,
                                            padding=padding))
        if solarize:
            ops.append(T.RandomSolarize(solarize))
        self.ops = nn.Sequential(*ops, T.RandomHorizontalFlip(), T.Normalize(mean, std))

    def forward(self, images: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        if isinstance(images, torch.Tensor):
            return self.ops(to_float(images))  # a grey batch stays one channel until Normalize
        return self.ops[1:](to_float(cropped(images, self.crops)[0]))


def colour_jitter(brightness: float, contrast: float, saturation: float, hue: float) -> nn.Module:
    """torchvision's colour jitter (multiplicative brightness) with probability 0.8, as MoCo v2's code."""
    return T.ColorJitter(brightness, contrast, saturation, hue, p=0.8)


def simclr_jitter(strength: float) -> tuple:
    """SimCLR's colour distortion of strength s: brightness, contrast, saturation 0.8 s, hue 0.2 s."""
    return (0.8 * strength, 0.8 * strength, 0.8 * strength, 0.2 * strength)
