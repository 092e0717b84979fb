"""The MLPs that project and predict (SimSiam's projector and predictor, BYOL's): Linear, BatchNorm, ReLU
layers, as each author's code stacks them."""
from __future__ import annotations

from torch import nn


def mlp(dims: list[int], *, hidden_bias: bool = False, last_bias: bool = True, last_norm: str = "none") -> nn.Sequential:
    """Layers through ``dims`` (e.g. [2048, 512, 2048]): each but the last Linear -> BatchNorm1d -> ReLU, the last a
    Linear, followed by a BatchNorm1d when ``last_norm`` is "affine" or "plain" (without a learnt scale and shift,
    SimSiam's output BN). ``hidden_bias``: the hidden Linears keep a bias although a BatchNorm follows (BYOL's
    Haiku Linear has one; SimSiam's code drops it). ``last_bias``: the last Linear's (SimSiam's predictor keeps it)."""
    if len(dims) < 2:
        raise ValueError(f"an MLP needs an input and an output width, not dims={dims}")
    if last_norm not in ("none", "affine", "plain"):
        raise ValueError(f"last_norm is 'none', 'affine' or 'plain', not {last_norm!r}")
    layers: list[nn.Module] = []
    for width_in, width_out in zip(dims[:-2], dims[1:-1]):
        layers += [nn.Linear(width_in, width_out, bias=hidden_bias), nn.BatchNorm1d(width_out), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(dims[-2], dims[-1], bias=last_bias))
    if last_norm != "none":
        layers.append(nn.BatchNorm1d(dims[-1], affine=last_norm == "affine"))
    return nn.Sequential(*layers)
