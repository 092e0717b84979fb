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
    eval mode it is plain BatchNorm2d. Its state dict is BatchNorm2d's, so a model keeps timm's keys."""

    def __init__(self, num_features: int, splits: int, **kwargs):
        super().__init__(num_features, **kwargs)
        self.splits = splits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.splits == 1:
            return super().forward(x)
        n, c, h, w = x.shape
        if n % self.splits:
            raise ValueError(f"a batch of {n} cannot split into {self.splits} BatchNorm groups: make the batch "
                             f"per process a multiple of bn_splits")
        self.num_batches_tracked += 1
        momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        mean, var = self.running_mean.repeat(self.splits), self.running_var.repeat(self.splits)
        out = F.batch_norm(x.reshape(n // self.splits, c * self.splits, h, w), mean, var,
                           self.weight.repeat(self.splits), self.bias.repeat(self.splits), True, momentum, self.eps)
        with torch.no_grad():  # each group moved its copy of the running statistics: keep their mean
            self.running_mean.copy_(mean.view(self.splits, c).mean(0))
            self.running_var.copy_(var.view(self.splits, c).mean(0))
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
