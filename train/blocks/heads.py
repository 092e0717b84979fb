"""The MLPs that project and predict (SimSiam's projector and predictor, BYOL's, MoCo v3's): Linear, BatchNorm,
ReLU layers, as each author's code stacks them; and DINO's head."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm


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


class DINOHead(nn.Module):
    """DINO's projection head (Caron et al. 2021, Sec. 3.1 and vision_transformer.py): an MLP of ``layers`` Linears
    (GELU between, BatchNorm too with ``use_bn``) to a 256-d bottleneck, L2 normalisation, then a weight-normalised
    Linear without bias to the K outputs, w = g v / ||v||. Its scale g starts at 1 and, with ``norm_last_layer``, is
    never trained (the authors' default, which they find steadies training). Linears start truncated-normal, std 0.02."""

    def __init__(self, width: int, out_dim: int = 65536, hidden: int = 2048, bottleneck: int = 256, layers: int = 3,
                 use_bn: bool = False, norm_last_layer: bool = True):
        super().__init__()
        dims = [width] + [hidden] * (layers - 1) + [bottleneck]
        blocks: list[nn.Module] = []
        for i, (width_in, width_out) in enumerate(zip(dims[:-1], dims[1:])):
            blocks.append(nn.Linear(width_in, width_out))
            if i < len(dims) - 2:
                blocks += [nn.BatchNorm1d(width_out)] if use_bn else []
                blocks.append(nn.GELU())
        self.mlp = nn.Sequential(*blocks)
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02, a=-2.0, b=2.0)
                nn.init.zeros_(layer.bias)
        self.last_layer = weight_norm(nn.Linear(bottleneck, out_dim, bias=False))
        scale = self.last_layer.parametrizations.weight.original0  # g, [out_dim, 1]
        with torch.no_grad():
            scale.fill_(1.0)
        scale.requires_grad_(not norm_last_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = F.normalize(self.mlp(x), dim=-1)
        with torch.autocast(z.device.type, enabled=False):  # float32 logits: T_t = 0.04 magnifies bf16's steps 25-fold
            return self.last_layer(z.float())
