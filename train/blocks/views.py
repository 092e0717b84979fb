"""View makers: the augmented copies of a batch that a method contrasts."""
from __future__ import annotations

import torch
from torch import nn


class TwoViews(nn.Module):
    """Two independently augmented views of each image, as one batch [2B, ...]: rows 0..B-1 are the
    first view of images 0..B-1, rows B..2B-1 the second, so image i's views are rows i and i + B.

    ``augment`` is a one-view maker of ``train.augment`` (e.g. ``InstanceAugment``). Whole in-memory
    images are augmented in one call on the batch stacked twice: the batched augmentation draws its
    random parameters per row, so the two views differ, and the backbone then sees both in one pass
    (InvaSpread's ``torch.cat((inputs1, inputs2))``). Image files arrive as the two crops the CPU
    workers cut, one batch per view (``crops``), and each gets the rest of ``augment``.

    ``second``: the second view's own maker, where a recipe's two views differ (BYOL's blur and solarisation);
    each view is then made by its own call.
    """

    def __init__(self, augment: nn.Module, second: nn.Module | None = None):
        super().__init__()
        self.augment, self.second = augment, second
        self.crops = list(augment.crops) + list((second or augment).crops)

    def forward(self, images: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        if isinstance(images, torch.Tensor):
            if self.second is None:
                return self.augment(torch.cat([images, images]))
            return torch.cat([self.augment(images), self.second(images)])
        if len(images) != 2:
            raise ValueError(f"{len(images)} crops per image for two views: cut them with TwoViews.crops")
        return torch.cat([self.augment([images[0]]), (self.second or self.augment)([images[1]])])


class MultiCrop(nn.Module):
    """SwAV's multi-crop (Caron et al. 2020, Sec. 3.2): ``groups`` of (one-view maker, count), e.g. two 224-px crops
    and six 96-px ones, each group its own crop size and scale range. Returns one batch per group, crops of one
    image group after group in order (group g's crop j of every image, then crop j + 1), so that the backbone runs
    once per resolution and crop v of the batch is rows v B .. (v + 1) B - 1 of the outputs concatenated.
    In-memory images: each group augments the batch stacked ``count`` times in one call; image files arrive as
    the crops the CPU workers cut (``crops``), one batch per crop, and each group's are viewed in one call too."""

    def __init__(self, groups: list[tuple[nn.Module, int]]):
        super().__init__()
        self.makers = nn.ModuleList(maker for maker, _ in groups)
        self.counts = [count for _, count in groups]
        self.crops = [crop for maker, count in groups for crop in list(maker.crops) * count]

    def forward(self, images: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
        if isinstance(images, torch.Tensor):
            return [maker(torch.cat([images] * count)) for maker, count in zip(self.makers, self.counts)]
        if len(images) != len(self.crops):
            raise ValueError(f"{len(images)} crops per image for {len(self.crops)} views: cut them with MultiCrop.crops")
        out, first = [], 0
        for maker, count in zip(self.makers, self.counts):  # a group's crops share a size: one call views them all
            out.append(maker([torch.cat(images[first:first + count])]))
            first += count
        return out


def by_resolution(batches: list[torch.Tensor]) -> list[torch.Tensor]:
    """Consecutive batches of one image size concatenated: one backbone call per resolution, as DINO's
    ``MultiCropWrapper`` runs its two global crops (made by two makers) together and the local ones together."""
    runs: list[list[torch.Tensor]] = []
    for batch in batches:
        if runs and runs[-1][0].shape[-2:] == batch.shape[-2:]:
            runs[-1].append(batch)
        else:
            runs.append([batch])
    return [torch.cat(run) if len(run) > 1 else run[0] for run in runs]
