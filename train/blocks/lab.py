"""LabSplit: CMC's view maker, one crop of the RGB image split into two views (Tian et al. 2019).

The authors' loader (``train_CMC.py``) takes one random resized crop and a horizontal flip of the
RGB image, converts it to Lab and splits L from ab: both views share the crop, and there is no
colour jitter, since colour is what the views are made of. The split itself is the exported
model's (``zoo.streams``: Lab's L | ab, or a grey image's low | high frequencies), so training
and the model users load see exactly the same views.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .. import batch_transforms as T
from ..augment import Crop, cropped, to_rgb_float


class LabSplit(nn.Module):
    """uint8 images (whole, or the one crop the CPU workers cut) -> crop, flip -> ``split`` -> (view 1, view 2).

    ``split`` takes RGB in [0, 1] (e.g. ``TwoStream.split``) and returns the two normalised views.
    """

    def __init__(self, size: int, split: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                 scale=(0.08, 1.0)):
        super().__init__()
        self.crops = [Crop(size, tuple(scale))]
        self.crop, self.flip, self.split = self.crops[0].on_device(), T.RandomHorizontalFlip(), split

    def forward(self, images: torch.Tensor | list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(images, torch.Tensor):
            rgb = self.crop(to_rgb_float(images))
        else:
            rgb = to_rgb_float(cropped(images, self.crops)[0])
        return self.split(self.flip(rgb))
