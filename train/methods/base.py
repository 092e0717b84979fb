"""The contract between a method and the engine: every method of the lineage is one `Method`.

The engine owns the loop, the optimiser, the schedules, the devices and the checkpoints; a
method owns its parts (encoders, heads, memory bank, queue, prototypes, centre) and its
objective. Per step, in DINO's order, the engine:

1. sets each parameter group's lr and weight decay from the per-step schedules
   (a group with ``fixed_lr`` keeps the base lr: SimSiam's predictor);
2. calls ``forward(images, index, progress)`` under autocast and backpropagates the loss;
3. calls ``after_backward(progress)`` (DINO cancels the last layer's gradients in its first
   epoch, SwAV freezes its prototypes), clips gradients if the preset says so, steps;
4. calls ``after_step(progress)`` (EMA targets, prototype normalisation);
5. every N steps, logs the loss and the method's ``logs`` without a device sync per step.

Before step 1 of a fresh run it calls ``prefill(batches)`` with every training image once,
cleanly preprocessed (InstDisc and CMC fill their memory banks). At the end it exports
``export()``: a plain timm backbone for most methods, the teacher for DINO, a timm-registered
multi-stream or patch model for CMC and CPC; and each of ``extra_exports()`` beside it (SimCLR v2's
encoder with the first layer of its projection head). ``networks()`` names the modules that
``--compile`` compiles.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import torch
from torch import nn


@dataclass(frozen=True)
class Progress:
    """Where training is: ``epoch`` (0-based), ``step`` (0-based, over the whole run) of ``total_steps``."""

    epoch: int
    step: int
    total_steps: int

    @property
    def fraction(self) -> float:
        """In [0, 1]: what EMA momenta and temperature warm-ups are scheduled on."""
        return min(1.0, self.step / max(1, self.total_steps))


@dataclass
class StepOutput:
    """A step's ``loss`` and the scalar tensors to log beside it (detached, left on the device)."""

    loss: torch.Tensor
    logs: dict[str, torch.Tensor] = field(default_factory=dict)


def group(params: Iterable[nn.Parameter], *, weight_decay: bool = True, lars: bool = True,
          fixed_lr: bool = False, **extra) -> dict:
    """One parameter group as the engine reads it: ``weight_decay`` False spares it from decay, ``lars``
    False excludes it from LARS's trust ratio, ``fixed_lr`` keeps its lr off the schedule."""
    return dict(params=[p for p in params if p.requires_grad], weight_decay=weight_decay, lars=lars,
                fixed_lr=fixed_lr, **extra)


def split_norm_bias(groups: list[dict]) -> list[dict]:
    """Each group split in two: the weights as declared, and the biases and normalisation parameters
    (the 1-d ones) without weight decay or LARS adaptation, as SimCLR, BYOL, SwAV and MoCo v3 train."""
    out = []
    for g in groups:
        matrices = [p for p in g["params"] if p.ndim > 1]
        vectors = [p for p in g["params"] if p.ndim <= 1]
        out += [{**g, "params": matrices}, {**g, "params": vectors, "weight_decay": False, "lars": False}]
    return [g for g in out if g["params"]]


def make_backbone(cfg, **overrides) -> nn.Module:
    """The preset's timm backbone without a classifier (``overrides``: e.g. CMC's ``in_chans=1``)."""
    import timm

    return timm.create_model(cfg.arch, num_classes=0, **{**cfg.model_args, **overrides})


class Method(nn.Module):
    """Base class of every method: override ``forward``; the hooks default to doing nothing.

    A method module (``train/methods/NAME.py``) holds one subclass, ``PRESETS`` (``smoke``, ``fmnist``,
    ``paper``, ...: name -> Config) and ``build(cfg, num_images, mean, std) -> Method``, which makes its
    encoders with :func:`make_backbone`. The kNN monitor and the export both use :meth:`export`.
    """

    backbone: nn.Module

    def forward(self, images: torch.Tensor, index: torch.Tensor, progress: Progress) -> StepOutput:
        """The paper's objective on a batch of uint8 ``images`` [B, C, H, W] with dataset ``index`` [B]."""
        raise NotImplementedError

    def param_groups(self) -> list[dict]:
        """The parameter groups (see :func:`group`); by default one group of every trainable parameter."""
        return [group(self.parameters())]

    def prefill(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Before step 1 of a fresh run: (preprocessed images, index) batches of every training image once."""

    def after_backward(self, progress: Progress) -> None:
        """After the gradients exist, before clipping and the optimiser step."""

    def after_step(self, progress: Progress) -> None:
        """After the optimiser step (EMA targets, normalising prototypes)."""

    def networks(self) -> list[nn.Module]:
        """The modules whose calls make a step's compute, which ``--compile`` compiles in place (``torch.compile``
        of each one's call: the state dict keeps its keys). Default: every child holding parameters, a
        ``ModuleList``'s members one by one. A method that reaches its encoders other than by calling them
        (CMC's streams, CPC's patch encoder) names them itself."""
        members = [m for child in self.children() for m in (child if isinstance(child, nn.ModuleList) else [child])]
        return [m for m in members if next(m.parameters(), None) is not None]

    def export(self) -> nn.Module:
        """The module users get, a timm model with ``num_classes == 0``: by default the backbone."""
        return self.backbone

    def extra_exports(self) -> dict[str, nn.Module]:
        """Further timm models users get beside :meth:`export`, by the suffix of their zoo name (SimCLR v2:
        ``"projected"``, the encoder with the projection head's first layer). Default: none."""
        return {}

    @property
    def crops(self) -> list:
        """The random resized crops (``train.augment.Crop``) of one example's views, in view order.

        Image files reach ``forward`` as a list with one uint8 batch per crop, cut by the CPU workers
        from the full-resolution image; in-memory images arrive whole and the views crop them on the
        device. The view makers of ``train.augment`` take both. Default: ``self.augment.crops``.
        """
        augment = getattr(self, "augment", None)
        if not hasattr(augment, "crops"):
            raise NotImplementedError(f"{type(self).__name__} names no crops: set self.augment to a view maker of "
                                      "train.augment, or override the crops property")
        return list(augment.crops)

    @property
    def wants_prefill(self) -> bool:
        """Whether the engine should spend a pass over the data on :meth:`prefill`."""
        return type(self).prefill is not Method.prefill
