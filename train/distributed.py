"""torchrun glue: process group from the environment, and gathers that keep every rank in step.

Two gathers, named for what happens to gradients, because dropping them by accident is silent:
``gather_no_grad`` for what only feeds buffers (memory banks, queues, indices), and
``gather_with_grad`` for a loss over the global batch (SimCLR's NT-Xent across GPUs).
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def setup() -> tuple[int, int, torch.device]:
    """(rank, world_size, device); starts the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return (dist.get_rank() if world > 1 else 0), world, device


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if world_size() > 1 else 0


@torch.no_grad()
def gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` of every rank concatenated along dim 0, in rank order, detached: no gradient flows back,
    not even to this rank's own rows."""
    if world_size() == 1:
        return tensor.detach()
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)



class _GatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward sums every rank's gradient of the gathered tensor (all_reduce) and
    returns this rank's slice, since every rank's loss may depend on every rank's rows."""

    @staticmethod
    def forward(ctx, tensor):
        parts = [torch.empty_like(tensor) for _ in range(world_size())]
        dist.all_gather(parts, tensor.contiguous())
        ctx.rows = tensor.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[rank() * ctx.rows:(rank() + 1) * ctx.rows]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` of every rank concatenated along dim 0, in rank order, with gradients: this rank's input
    receives the sum over ranks of each loss's gradient with respect to its rows. Under DDP (which averages
    parameter gradients) a per-rank loss over the gathered batch then trains as the single-process loss
    over the concatenated batch would. Every rank must pass the same shape."""
    if world_size() == 1:
        return tensor
    return _GatherWithGrad.apply(tensor)


def global_batch_norm(module: torch.nn.Module) -> torch.nn.Module:
    """Every BatchNorm of ``module`` computing its statistics over the global batch (SimCLR's "global BN")
    when training on several GPUs; unchanged on one process, or on CPUs, where SyncBatchNorm cannot run."""
    if world_size() > 1 and torch.cuda.is_available():
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return module


def all_sum(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed in place over every rank (itself on one process), and returned."""
    if world_size() > 1:
        dist.all_reduce(tensor)
    return tensor


@torch.no_grad()
def mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over ranks, so that every rank holds the same value."""
    if world_size() > 1:
        tensor = all_sum(tensor.clone()) / world_size()
    return tensor
