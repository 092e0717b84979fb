"""SwAV's release (facebookresearch/swav, ``swav_800ep_pretrain.pth.tar``).

The released file is a bare state dict (``hubconf.py`` loads it directly and strips ``module.``); a
checkpoint of ``main_swav.py`` holds the same under ``"state_dict"`` (``eval_linear.py`` accepts both).
Keys are ``module.`` + ``src/resnet50.py``'s ResNet, named as torchvision's, plus the projection head
``projection_head.`` and the prototypes ``prototypes.`` (dropped). That ResNet pads the image by 1 before a
7x7 conv of padding 2, the same zeros as timm's padding 3, so the weights carry over unchanged.
No globals to allow.
"""
from __future__ import annotations

from ..convert import converter, strip_prefix
from ._common import is_state_dict, refuse, require_prefix

PREFIX = "module."
LAYOUT = "the SwAV layout, a state dict of 'module.' keys (bare, or under 'state_dict')"


@converter("swav")
def swav(raw: dict) -> dict:
    """The state dict without ``module.``, the projection head and prototypes dropped."""
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else raw
    if not is_state_dict(state):
        raise refuse(LAYOUT, raw)
    require_prefix(state, PREFIX, LAYOUT)
    return strip_prefix(state, PREFIX, drop=("projection_head.", "prototypes."))
