"""MoCo's dictionary as a queue (He et al. 2020, Sec. 3.2), also SimCLR v2's optional memory."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class Queue(nn.Module):
    """The K most recent keys, [K, d] unit vectors: each batch of keys is enqueued and the oldest K are
    dequeued, so the dictionary is decoupled from the batch size. Starts as random unit vectors, as the
    authors' ``queue`` buffer does.

    Both the keys and the write ``pointer`` are buffers: they travel with the state dict, so a resumed
    run continues from the same dictionary. The pointer stays on the device (no host sync per step), and
    K need not be a multiple of the batch: writes wrap around the end.
    """

    def __init__(self, size: int, dim: int):
        super().__init__()
        if size < 1:
            raise ValueError(f"a queue holds at least one key, not {size}")
        self.register_buffer("keys", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))  # the oldest key, overwritten next

    def __len__(self) -> int:
        return self.keys.shape[0]

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys`` [n, d] over the n oldest; a batch longer than the queue leaves its newest K."""
        keys = keys[-len(self):].to(self.keys.dtype)
        slots = (self.pointer + torch.arange(len(keys), device=self.keys.device)) % len(self)
        self.keys.index_copy_(0, slots, keys)
        self.pointer.copy_((self.pointer + len(keys)) % len(self))

    def oldest_first(self) -> torch.Tensor:
        """The keys in the order they were enqueued, oldest first."""
        return self.keys.roll(-int(self.pointer), dims=0)
