"""The memory bank of InstDisc (Wu et al. 2018, Sec. 3.2) and CMC: one feature per training image."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class MemoryBank(nn.Module):
    """V = {v_i}, N x d unit vectors, initialised at random on the sphere.

    After each step the rows of the batch move toward their new features,
    v_i <- normalise(m * v_i + (1 - m) * f_i), with m = 0.5 in the paper.
    """

    def __init__(self, size: int, dim: int, momentum: float = 0.5):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("memory", F.normalize(torch.randn(size, dim), dim=1))

    def __len__(self):
        return self.memory.shape[0]

    def sample(self, count: int) -> torch.Tensor:
        """Indices of ``count`` noise rows drawn uniformly: P_n(i) = 1/N."""
        return torch.randint(len(self), (count,), device=self.memory.device)

    @torch.no_grad()
    def write(self, index: torch.Tensor, features: torch.Tensor) -> None:
        """v_i <- normalise(f_i): set rows outright (filling the bank before training)."""
        self.memory[index] = F.normalize(features.to(self.memory.dtype), dim=1)

    @torch.no_grad()
    def update(self, index: torch.Tensor, features: torch.Tensor) -> None:
        rows = self.momentum * self.memory[index] + (1 - self.momentum) * features.to(self.memory.dtype)
        self.memory[index] = F.normalize(rows, dim=1)
