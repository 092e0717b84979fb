"""Shuffling BN (He et al. 2020, Sec. 3.3): the key encoder's BatchNorm must not see the batch the query
encoder's BatchNorm saw, or the model cheats through the batch statistics (the pretext task is solved by
a "signature" of the sub-batch, not by a good representation).

Under DDP each process's BatchNorm normalises its own sub-batch, so shuffling the key batch across
processes before the key encoder (and restoring the order after) gives the two encoders different
sub-batches. On one device, :class:`SplitBatchNorm` divides the batch into groups that normalise
separately (as the paper's 8 GPUs did), and the shuffle happens within the batch.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from .. import distributed


class SplitBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are computed per group of ``splits`` rows (rows i, i + splits,
    i + 2 splits, ... normalise together); the running statistics are the mean over the groups, and in
    eval mode it is plain BatchNorm2d. Its state dict is BatchNorm2d's, so a model keeps timm's keys.

    The authors' CIFAR demo repeats the running statistics for the groups and averages the groups' copies back
    after every step. The running average r <- (1 - momentum) r + momentum b is linear in r, so the groups
    may as well keep their own copies (``split_mean``, ``split_var``, not saved) and be averaged only when
    the statistics are read: in eval mode and in the state dict. That is the same mean, four tensor
    operations fewer per layer and step (on a GPU, four kernel launches). While training, the copies are
    what is kept: write ``running_mean`` and ``running_var`` in eval mode or through ``load_state_dict``."""

    def __init__(self, num_features: int, splits: int, **kwargs):
        super().__init__(num_features, **kwargs)
        self.splits = splits
        self.register_buffer("split_mean", self.running_mean.repeat(splits), persistent=False)
        self.register_buffer("split_var", self.running_var.repeat(splits), persistent=False)

    @torch.no_grad()
    def _seed_groups(self) -> None:
        """Every group's copy from the running statistics (which hold after eval mode or a load)."""
        self.split_mean.copy_(self.running_mean.repeat(self.splits))
        self.split_var.copy_(self.running_var.repeat(self.splits))

    @torch.no_grad()
    def _average_groups(self) -> None:
        """The running statistics as the mean of the groups' copies (what the authors' code keeps)."""
        self.running_mean.copy_(self.split_mean.view(self.splits, -1).mean(0))
        self.running_var.copy_(self.split_var.view(self.splits, -1).mean(0))

    def train(self, mode: bool = True) -> "SplitBatchNorm":
        if mode != self.training:
            self._seed_groups() if mode else self._average_groups()
        return super().train(mode)

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        if self.training:
            self._average_groups()
        super()._save_to_state_dict(destination, prefix, keep_vars)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if prefix + "running_mean" in state_dict:  # a partial load (strict=False) without them keeps the groups'
            self._seed_groups()

    def reset_running_stats(self) -> None:
        super().reset_running_stats()
        if hasattr(self, "split_mean"):  # BatchNorm2d's __init__ resets before the groups' copies exist
            self._seed_groups()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:  # one group included: training keeps the statistics in the groups' copies
            return super().forward(x)
        n, c, h, w = x.shape
        if n % self.splits:
            raise ValueError(f"a batch of {n} cannot split into {self.splits} BatchNorm groups: make the batch "
                             f"per process a multiple of bn_splits")
        momentum = self.momentum
        if momentum is None:  # a cumulative average needs the count; with a momentum, as the authors, none is kept
            self.num_batches_tracked += 1
            momentum = 1.0 / float(self.num_batches_tracked)
        out = F.batch_norm(x.reshape(n // self.splits, c * self.splits, h, w), self.split_mean, self.split_var,
                           self.weight.repeat(self.splits), self.bias.repeat(self.splits), True, momentum, self.eps)
        return out.view(n, c, h, w)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, splits={self.splits}"


def split_batch_norm(module: nn.Module, splits: int) -> nn.Module:
    """Replace every BatchNorm2d of ``module`` in place by a :class:`SplitBatchNorm` with the same state."""
    if splits < 1:
        raise ValueError(f"bn_splits must be at least 1, not {splits}")
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d and child.affine and child.track_running_stats:
            split = SplitBatchNorm(child.num_features, splits, eps=child.eps, momentum=child.momentum,
                                   device=child.weight.device, dtype=child.weight.dtype)
            split.load_state_dict(child.state_dict())
            setattr(module, name, split)
        else:
            split_batch_norm(child, splits)
    return module


@torch.no_grad()
def shuffled_forward(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``encoder(x)`` with BatchNorm seeing a random permutation of the global batch: the authors'
    ``_batch_shuffle_ddp`` and ``_batch_unshuffle_ddp``. Every process's rows are gathered, permuted by
    one permutation (drawn on rank 0 and broadcast), and each process encodes an equal share of the
    permuted batch; the outputs are gathered and each process takes back its own rows, in their order.
    On one process the permutation is within the batch (for :class:`SplitBatchNorm`'s groups)."""
    world = distributed.world_size()
    if world == 1:
        order = torch.randperm(len(x), device=x.device)
        return encoder(x[order])[order.argsort()]
    every = distributed.gather_no_grad(x)
    order = torch.randperm(len(every), device=x.device)
    dist.broadcast(order, src=0)
    mine = distributed.rank()
    out = distributed.gather_no_grad(encoder(every[order.view(world, -1)[mine]]))
    return out[order.argsort().view(world, -1)[mine]]
