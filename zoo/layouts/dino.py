"""DINO's releases (facebookresearch/dino): the backbone-only files and the full training checkpoints.

- Backbone only (``dino_deitsmall16_pretrain.pth``, ``dino_vitbase16_pretrain.pth``,
  ``dino_resnet50_pretrain.pth``): a bare state dict that ``hubconf.py`` loads straight into the authors'
  ``vision_transformer.VisionTransformer`` (ViT) or a torchvision ResNet-50 (``fc`` made an Identity).
  The ViT's names are timm's (``cls_token``, ``pos_embed`` with the class token's row first,
  ``patch_embed.proj``, ``blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``norm``; qkv bias on,
  LayerNorm eps 1e-6, ViT-S 6 heads, ViT-B 12: timm's defaults), the ResNet's torchvision's, which timm shares.
- Full checkpoint (``*_full_checkpoint.pth``, ``main_dino.py``'s ``checkpoint.pth``): ``{"student",
  "teacher", "optimizer", "epoch", "args", "dino_loss"[, "fp16_scaler"]}``, each network a
  ``utils.MultiCropWrapper`` (``backbone.`` and the DINO projection ``head.``), under ``module.`` when
  DistributedDataParallel wrapped it. The teacher is the network DINO evaluates (``eval_linear.py``'s
  default ``--checkpoint_key teacher``); ``args`` is an ``argparse.Namespace``, read as an inert stand-in.

Either way the backbone's keys lose a leading ``module.`` and ``backbone.`` (as ``utils.load_pretrained_weights``
strips them), and a classifier (``fc.`` / ``head.``) is dropped.
"""
from __future__ import annotations

from ..convert import converter, stand_in, strip_prefix
from ._common import is_state_dict, refuse, strip_leading

DINO_ALLOWED = {"argparse.Namespace": stand_in("argparse.Namespace")}  # the full checkpoint's "args"
LAYOUT = "a DINO release, a bare backbone state dict or a full checkpoint with a 'teacher' state dict"
CLASSIFIER = ("fc.", "head.")


@converter("dino", allowed=DINO_ALLOWED)
def dino(raw: dict) -> dict:
    """The backbone of a backbone-only file, or of the full checkpoint's teacher (``backbone.`` keys)."""
    if isinstance(raw, dict) and "teacher" in raw:
        teacher = raw["teacher"]
        if not is_state_dict(teacher):
            raise refuse(LAYOUT, raw)
        teacher = strip_leading(teacher, ("module.",))
        if not any(key.startswith("backbone.") for key in teacher):
            raise refuse(LAYOUT + " (its teacher holding 'backbone.' keys)", teacher)
        return strip_prefix(teacher, "backbone.", drop=CLASSIFIER)
    if not is_state_dict(raw):
        raise refuse(LAYOUT, raw)
    state = strip_leading(raw, ("module.", "backbone."))
    return {key: value for key, value in state.items() if not key.startswith(CLASSIFIER)}
