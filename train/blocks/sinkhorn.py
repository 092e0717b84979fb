"""SwAV's codes: the Sinkhorn-Knopp algorithm (Caron et al. 2020, eq. 3 and Sec. 3.1; Cuturi 2013)."""
from __future__ import annotations

import torch

from .. import distributed
from ..distributed import all_sum


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """The codes Q [B, K] of B feature-prototype scores z^T c [B, K]: the solution of

        max_Q  Tr(Q^T C^T Z) + epsilon H(Q)   s.t. every prototype takes B / K of the batch (equipartition),

    approached by ``iterations`` alternating normalisations of exp(scores / epsilon): each prototype's row to
    mass 1 / K, then each sample's column to mass 1 / B, with B and the row sums over every process's batch as
    the authors' ``distributed_sinkhorn``. Soft codes (no rounding, Sec. 3.1); each row of the result sums to 1.
    """
    with torch.autocast(scores.device.type, enabled=False):
        q = (scores.float() / epsilon).exp().T  # [K, B]
        prototypes, samples = q.shape[0], q.shape[1] * distributed.world_size()
        q /= all_sum(q.sum())
        for _ in range(iterations):
            q /= all_sum(q.sum(dim=1, keepdim=True)) * prototypes  # each prototype: 1 / K of the mass
            q /= q.sum(dim=0, keepdim=True) * samples  # each sample: 1 / B
        return (q * samples).T
