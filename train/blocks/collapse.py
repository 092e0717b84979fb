"""Detecting collapse, the failure of every method without negatives: all images mapped to one point.

SimSiam's gauge (Chen & He 2021, Sec. 4.1 and Fig. 2, middle): the standard deviation over the batch of the
L2-normalised outputs z / ||z||, per channel, averaged over channels. If the outputs are spread as a zero-mean
isotropic Gaussian it is 1 / sqrt(d); if they collapse to a constant vector it is 0. The gauge here is that
std times sqrt(d), so about 1 means spread and 0 means collapsed whatever the width d.
"""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

GAUGE = "output_std"  # the name a method logs the gauge under, which the engine watches
COLLAPSED = 0.1  # below a tenth of a Gaussian's spread: the paper's collapsed runs reach 0


@torch.no_grad()
def output_std(z: torch.Tensor) -> torch.Tensor:
    """sqrt(d) x the mean over channels of std_batch(z / ||z||): about 1 for spread outputs, 0 for collapsed
    ones. A tensor on z's device: reading it is the caller's (the engine's log) sync."""
    unit = F.normalize(z.detach().float(), dim=1)
    return unit.std(dim=0).mean() * math.sqrt(z.shape[1])


def collapse_warning(means: dict[str, float]) -> str | None:
    """What to tell the user when an epoch's mean gauge says the outputs collapsed; None while they are spread
    (or the method logs no gauge)."""
    std = means.get(GAUGE)
    if std is None or std >= COLLAPSED:
        return None
    return (f"warning: the outputs have collapsed ({GAUGE} {std:.3g}; about 1 when spread, 0 when every image "
            "maps to one point), so the features carry almost nothing. Check what keeps the method from collapsing "
            "(SimSiam's stop-gradient, BYOL's predictor and slowly moving target, DINO's centring and sharpening), "
            "then lower the lr or add warm-up epochs; resuming will not help.")
