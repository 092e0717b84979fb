"""Per-step schedules of lr and weight decay, computed once before training.

Each is an array with one value per optimisation step of the whole run, so the value at a
step depends on nothing but the step: a resumed run needs only its step counter (no scheduler
state in the checkpoint), and methods can schedule their own quantities (EMA momenta, DINO's
teacher temperature) with the same functions.
"""
from __future__ import annotations

import math

import numpy as np

from .config import Config


def warming(start: float, total: int, warmup: int, origin: float = 0.0) -> np.ndarray:
    """The warm-up's ``total`` values (only the first ``warmup`` are read): from 0, ``start`` x (step + 1) / warmup
    (never a zero first step); from ``origin`` > 0, linearly from it to ``start`` at the last warm-up step, as
    SwAV's ``np.linspace(start_warmup, base_lr, warmup)``."""
    step = np.arange(total, dtype=np.float64)
    if origin:
        return origin + (start - origin) * np.minimum(step / max(1, warmup - 1), 1)
    return start * (step + 1) / max(1, warmup)


def cosine(start: float, end: float, total: int, warmup: int = 0, origin: float = 0.0) -> np.ndarray:
    """``total`` values: a linear warm-up to ``start`` over ``warmup`` steps (:func:`warming`), then half a cosine
    from ``start`` to ``end`` over the rest (Loshchilov & Hutter 2017, without restarts)."""
    step = np.arange(total, dtype=np.float64)
    rest = np.clip((step - warmup) / max(1, total - warmup), 0, 1)
    values = end + (start - end) * 0.5 * (1 + np.cos(math.pi * rest))
    return np.where(step < warmup, warming(start, total, warmup, origin), values)


def steps(start: float, milestones: tuple, steps_per_epoch: int, total: int, warmup: int = 0,
          factors: tuple = (), origin: float = 0.0) -> np.ndarray:
    """``start`` times ``factors[i]`` from milestone epoch ``i`` on (default 0.1, 0.01, ...: x0.1 at each),
    after the same linear warm-up."""
    factors = tuple(factors) or tuple(0.1 ** (i + 1) for i in range(len(milestones)))
    if len(factors) != len(milestones):
        raise ValueError(f"lr_factors {factors} must give one factor per milestone {tuple(milestones)}")
    epoch = np.arange(total) // steps_per_epoch
    reached = sum((epoch >= m).astype(int) for m in milestones) if milestones else np.zeros(total, dtype=int)
    values = start * np.array((1.0, *factors))[reached]
    return np.where(np.arange(total) < warmup, warming(start, total, warmup, origin), values)


def base_lr(cfg: Config) -> float:
    """``cfg.lr`` scaled by the global batch: x B/256 (Goyal et al. 2017) or x sqrt(B) (SimCLR v2)."""
    return cfg.lr * {"none": 1.0, "linear": cfg.batch_size / 256, "sqrt": math.sqrt(cfg.batch_size)}[cfg.lr_scaling]


def cosine_per_epoch(per_step: np.ndarray, steps_per_epoch: int, warmup: int = 0) -> np.ndarray:
    """A per-step cosine held at its value at each epoch's start (from the end of the warm-up on): MoCo's
    ``adjust_learning_rate``, lr = base x (1 + cos(pi epoch / epochs)) / 2, called once per epoch."""
    step = np.arange(len(per_step))
    held = per_step[np.maximum(step // steps_per_epoch * steps_per_epoch, warmup)]
    return np.where(step < warmup, per_step, held)


def lr_schedule(cfg: Config, steps_per_epoch: int) -> np.ndarray:
    total, warmup = cfg.epochs * steps_per_epoch, round(cfg.warmup_epochs * steps_per_epoch)
    if cfg.schedule == "cosine":
        return cosine(base_lr(cfg), cfg.lr_end, total, warmup, cfg.warmup_start)
    if cfg.schedule == "cosine-epoch":
        return cosine_per_epoch(cosine(base_lr(cfg), cfg.lr_end, total, warmup, cfg.warmup_start), steps_per_epoch,
                                warmup)
    return steps(base_lr(cfg), cfg.milestones, steps_per_epoch, total, warmup, cfg.lr_factors, cfg.warmup_start)


def weight_decay_schedule(cfg: Config, steps_per_epoch: int) -> np.ndarray:
    """Constant, or with ``weight_decay_end`` a cosine from ``weight_decay`` to it over the run (DINO)."""
    total = cfg.epochs * steps_per_epoch
    if cfg.weight_decay_end is None:
        return np.full(total, cfg.weight_decay)
    return cosine(cfg.weight_decay, cfg.weight_decay_end, total)
