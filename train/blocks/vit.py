"""Vision Transformers as the stage-4 papers train them: timm's ``VisionTransformer`` with MoCo v3's stabilising
changes (Chen, Xie & He 2021, Sec. 4 and vits.py), and the stochastic depth a momentum teacher must not have."""
from __future__ import annotations

import math

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from torch.nn import functional as F


def is_vit(module: nn.Module) -> bool:
    return isinstance(module, VisionTransformer)


def sincos_position_embedding(grid: tuple[int, int], dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """MoCo v3's fixed 2-D sine-cosine position embedding [1, 1 + h w, dim]: a zero row for the class token, then per
    patch sin and cos of its row index and of its column index, each at dim / 4 frequencies temperature^(-i / (dim / 4)).
    The row (major) index feeds the first half, as vits.py's ``meshgrid`` of (w, h) does."""
    if dim % 4:
        raise ValueError(f"a 2-D sine-cosine position embedding needs a width divisible by 4, not {dim}")
    rows, cols = torch.meshgrid(torch.arange(grid[0], dtype=torch.float32),
                                torch.arange(grid[1], dtype=torch.float32), indexing="ij")
    omega = 1.0 / temperature ** (torch.arange(dim // 4, dtype=torch.float32) / (dim // 4))
    major, minor = rows.flatten()[:, None] * omega, cols.flatten()[:, None] * omega
    patches = torch.cat([major.sin(), major.cos(), minor.sin(), minor.cos()], dim=1)
    return torch.cat([torch.zeros(1, dim), patches])[None]


@torch.no_grad()
def moco_v3_vit(vit: VisionTransformer, stop_grad_conv1: bool = True) -> VisionTransformer:
    """``vit`` set up as MoCo v3's ``VisionTransformerMoCo``: the fixed sin-cos position embedding (not trained);
    Xavier-uniform Linears, the qkv projection's three parts each on its own fan, biases zero; the class token
    N(0, 1e-6); the patch projection Xavier-uniform over its 3 p^2 inputs and, with ``stop_grad_conv1``, frozen
    at that random init: the paper's fix for the training instability of ViTs (Sec. 4.2, "random patch projection")."""
    if vit.cls_token is None or vit.num_prefix_tokens != 1:
        raise ValueError("MoCo v3's ViT has exactly one class token; build the timm ViT with class_token=True and no "
                         "register tokens")
    vit.pos_embed.copy_(sincos_position_embedding(vit.patch_embed.grid_size, vit.embed_dim))
    vit.pos_embed.requires_grad_(False)
    for name, module in vit.named_modules():
        if isinstance(module, nn.Linear):
            fan_out = module.weight.shape[0] // 3 if name.endswith("qkv") else module.weight.shape[0]
            bound = math.sqrt(6.0 / (fan_out + module.weight.shape[1]))  # Xavier-uniform on each part's own fans
            nn.init.uniform_(module.weight, -bound, bound)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    nn.init.normal_(vit.cls_token, std=1e-6)
    proj = vit.patch_embed.proj
    bound = math.sqrt(6.0 / (3 * math.prod(proj.kernel_size) + vit.embed_dim))
    nn.init.uniform_(proj.weight, -bound, bound)
    nn.init.zeros_(proj.bias)
    proj.requires_grad_(not stop_grad_conv1)
    return vit


def without_drop_path(module: nn.Module) -> nn.Module:
    """``module`` with every stochastic-depth layer off (a momentum teacher is built without it: DINO's
    ``teacher = vits.__dict__[arch](patch_size)``, no drop_path_rate), in place."""
    for layer in module.modules():
        if hasattr(layer, "drop_prob"):
            layer.drop_prob = 0.0
    return module


class DINOViT(VisionTransformer):
    """timm's ViT (built with ``dynamic_img_size=True``) whose position embedding meets a smaller grid (the local
    crops') as DINO's ``interpolate_pos_encoding`` resamples it: bicubic, without antialiasing, at the scale factor
    (n + 0.1) / N, where timm's own resampling antialiases (which, at 224 -> 96 px, keeps about a third of a random
    embedding's spread against their 0.84). The state dict is timm's: exports load as plain ViTs."""

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        grid = tuple(self.patch_embed.grid_size)
        if x.ndim != 4 or tuple(x.shape[1:3]) == grid:
            return super()._pos_embed(x)
        batch, height, width, dim = x.shape
        patches = self.pos_embed[:, 1:].reshape(1, *grid, dim).permute(0, 3, 1, 2)
        patches = F.interpolate(patches, scale_factor=((height + 0.1) / grid[0], (width + 0.1) / grid[1]),
                                mode="bicubic", align_corners=False)
        if tuple(patches.shape[-2:]) != (height, width):
            raise ValueError(f"resampling a {grid} position grid gave {tuple(patches.shape[-2:])}, not {(height, width)}")
        pos_embed = torch.cat([self.pos_embed[:, :1], patches.permute(0, 2, 3, 1).reshape(1, -1, dim)], dim=1)
        x = torch.cat([self.cls_token.expand(batch, -1, -1), x.reshape(batch, -1, dim)], dim=1)
        return self.pos_drop(x + pos_embed)


def dino_vit(vit: VisionTransformer) -> VisionTransformer:
    """``vit`` made a :class:`DINOViT` in place (its class only: weights and keys stay)."""
    if not vit.dynamic_img_size:
        raise ValueError("DINO's local crops are smaller than the ViT's input: build it with model_args "
                         "dynamic_img_size=True")
    if vit.cls_token is None or vit.num_prefix_tokens != 1 or vit.no_embed_class:
        raise ValueError("DINO's ViT has one class token with its own position embedding and no register tokens")
    vit.__class__ = DINOViT
    return vit
