"""CPC's view: an augmented image cut into a grid of overlapping patches, each patch augmented on its own
(van den Oord et al. 2018, Sec. 3.2).

The paper takes a random 256 x 256 crop of a 300 x 300 image, flips it with probability 0.5, converts it
to grey, cuts a 7 x 7 grid of 64 x 64 patches at stride 32, and from every patch takes a random 60 x 60
sub-crop padded back to 64 x 64. The grid itself is ``zoo.patches.cut_patches``, the very function the
exported model cuts with, so training and inference see the same patches.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from zoo.patches import cut_patches, grid_size

from .. import batch_transforms as T
from ..augment import Crop, cropped, to_float


def jitter_patches(patches: torch.Tensor, jitter: int) -> torch.Tensor:
    """Each patch [..., C, P, P] replaced by a random (P - jitter)-px sub-crop of itself, padded back to P
    with zeros (the mean colour, after normalisation) ``jitter // 2`` px above and left: the paper's 60 x 60
    sub-crop of a 64 x 64 patch is ``jitter=4``. Overlapping patches then no longer share exactly aligned
    pixels, a low-level cue the prediction could otherwise rely on."""
    if not jitter:
        return patches
    *lead, c, p, _ = patches.shape
    flat = patches.reshape(-1, c, p, p)
    n, side = len(flat), p - jitter
    offset = torch.randint(0, jitter + 1, (2, n, 1), device=patches.device)
    rows = (offset[0] + torch.arange(side, device=patches.device))[:, :, None]  # [n, side, 1]
    cols = (offset[1] + torch.arange(side, device=patches.device))[:, None, :]  # [n, 1, side]
    crops = flat.permute(0, 2, 3, 1)[torch.arange(n, device=patches.device)[:, None, None], rows, cols]
    before = jitter // 2
    padded = F.pad(crops.permute(0, 3, 1, 2), (before, jitter - before, before, jitter - before))
    return padded.reshape(*lead, c, p, p)


class PatchGrid(nn.Module):
    """uint8 images -> augmented patches [B, rows, cols, 3, patch, patch].

    The image-level crop is a square of ``crop_scale`` of the image's area resized to ``size`` (the
    paper's 256 of 300 is 0.73; 1.0 takes the whole image, as Fashion-MNIST's 28 px resized to 32). It is
    ``crops[0]``: taken here on whole in-memory images, or by the CPU workers from image files, which
    then arrive as ``[crop]``. Then a horizontal flip (p 0.5), grey with probability ``grey`` (the
    paper: always), normalisation, the grid, and the per-patch sub-crop ``jitter``.
    """

    def __init__(self, size: int, patch_size: int, stride: int, mean, std, crop_scale: float = 1.0,
                 jitter: int = 0, grey: float = 0.0):
        super().__init__()
        grid_size(size, patch_size, stride)
        if not 0 <= jitter < patch_size:
            raise ValueError(f"jitter {jitter} must be in [0, patch_size={patch_size}): it is the border the "
                             "sub-crop removes (the paper: 4 of 64)")
        self.size, self.patch_size, self.stride, self.jitter = size, patch_size, stride, jitter
        self.crops = [Crop(size, scale=(crop_scale, crop_scale), ratio=(1.0, 1.0))]
        self.ops = nn.Sequential(
            self.crops[0].on_device(),
            T.RandomHorizontalFlip(),
            T.RandomGrayscale(p=grey),
            T.Normalize(mean, std),
        )

    def forward(self, images: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        if isinstance(images, torch.Tensor):
            images = self.ops(to_float(images))  # a grey batch stays one channel until Normalize
        else:
            images = self.ops[1:](to_float(cropped(images, self.crops)[0]))
        return jitter_patches(cut_patches(images, self.patch_size, self.stride), self.jitter)
