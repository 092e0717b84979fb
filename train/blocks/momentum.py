"""Momentum (moving-average) encoders: MoCo's key encoder (He et al. 2020, eq. 2), and the targets and
teachers of the later methods."""
from __future__ import annotations

import copy
import itertools
import math

import torch
from torch import nn


def momentum_copy(*modules: nn.Module) -> nn.Sequential:
    """A frozen copy of ``modules`` chained, starting equal to them (theta_k <- theta_q, as MoCo starts).
    It is updated only by :func:`momentum_update`, never by the optimiser."""
    target = copy.deepcopy(nn.Sequential(*modules))
    target.requires_grad_(False)
    return target


@torch.no_grad()
def momentum_update(target: nn.Module, online: tuple[nn.Module, ...], momentum: float) -> None:
    """theta_k <- m theta_k + (1 - m) theta_q for every parameter, in one fused call. ``online`` are the
    modules ``target`` was copied from, in the same order. Buffers (BatchNorm's running statistics) are
    not averaged: the target's own forward passes keep them, as the authors' code does."""
    targets = list(target.parameters())
    sources = list(itertools.chain.from_iterable(m.parameters() for m in online))  # read under no_grad: no detach
    if len(targets) != len(sources):
        raise ValueError(f"the momentum encoder has {len(targets)} parameters and the online encoder "
                         f"{len(sources)}: build it with momentum_copy from the same modules")
    torch._foreach_lerp_(targets, sources, 1.0 - momentum)


def cosine_momentum(base: float, fraction: float) -> float:
    """BYOL's target decay rate (Grill et al. 2020, Sec. 3.2): tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2 at
    step k of K, from ``base`` at the start to 1 at the end (``fraction`` = k / K); DINO's teacher follows the same."""
    return 1.0 - (1.0 - base) * (math.cos(math.pi * fraction) + 1.0) / 2.0
