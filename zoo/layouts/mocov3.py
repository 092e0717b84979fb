"""MoCo v3's releases (facebookresearch/moco-v3, ``r-50-1000ep.pth.tar``, ``vit-{s,b}-300ep.pth.tar``).

``main_moco.py`` saves ``{"epoch", "arch", "state_dict", "optimizer", "scaler"}``; ``state_dict`` is the
DistributedDataParallel-wrapped ``moco.builder.MoCo_ResNet`` or ``MoCo_ViT``: ``module.base_encoder.``,
``module.momentum_encoder.`` and ``module.predictor.``. The backbone is the base encoder without its
projector (``fc.`` for the torchvision ResNet-50, ``head.`` for the ViT), as the authors' ``main_lincls.py``
and ``convert_to_deit.py`` load it. The ViTs are timm 0.4.9's ``VisionTransformer`` (``vits.py``), whose
parameter names today's timm keeps: ``cls_token``, ``pos_embed`` (the fixed 2-D sin-cos table with a zero
row for the class token, stored as a parameter), ``patch_embed.proj``, ``blocks.N.{norm1,attn.qkv,attn.proj,
norm2,mlp.fc1,mlp.fc2}`` and ``norm``; qkv bias on, LayerNorm eps 1e-6, as timm's defaults. Their ViT-Small
has 12 heads (timm's has 6): the registry entry sets ``num_heads=12``. No globals to allow.
"""
from __future__ import annotations

from ..convert import converter, strip_prefix
from ._common import require_prefix, state_under

PREFIX = "module.base_encoder."
LAYOUT = "the MoCo v3 layout, a dict with 'state_dict' holding 'module.base_encoder.' keys"


@converter("mocov3")
def mocov3(raw: dict) -> dict:
    """``state_dict`` -> the base encoder's keys without ``module.base_encoder.``, its projector dropped."""
    state = state_under(raw, "state_dict", LAYOUT)
    require_prefix(state, PREFIX, LAYOUT)
    return strip_prefix(state, PREFIX, drop=("fc.", "head."))
