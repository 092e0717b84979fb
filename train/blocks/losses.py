"""Contrastive objectives, each the equation of its paper."""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def nce_loss(positive: torch.Tensor, noise: torch.Tensor, log_z: torch.Tensor, num_data: int) -> torch.Tensor:
    """Noise-contrastive estimation of the non-parametric softmax (Wu et al. 2018, eqs. 5-7).

    ``positive`` [B] and ``noise`` [B, m] are the logits v.f/T of each example's own bank row
    and of m rows drawn uniformly (P_n = 1/n). With P(i|v) = exp(v.f/T) / Z and
    h(i, v) = P(i|v) / (P(i|v) + m P_n), the loss is
        J = -E_data[log h(i, v)] - m E_noise[log(1 - h(i, v'))],
    computed in log space: log h = -softplus(log(m P_n) - s), log(1 - h) = -softplus(s - log(m P_n)),
    where s = logit - log Z.
    """
    log_noise = math.log(noise.shape[1] / num_data)  # log(m * P_n)
    data_term = F.softplus(log_noise - (positive - log_z))
    noise_term = F.softplus((noise - log_z) - log_noise).sum(dim=1)
    return (data_term + noise_term).mean()


def estimate_log_z(logits: torch.Tensor, num_data: int) -> torch.Tensor:
    """Monte Carlo estimate of the partition function, Z ~ n * mean_j exp(v_j.f/T) (eq. 8), as log Z."""
    return torch.logsumexp(logits.flatten(), dim=0) - math.log(logits.numel()) + math.log(num_data)
