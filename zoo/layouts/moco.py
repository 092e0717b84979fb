"""MoCo v1 and v2's releases (facebookresearch/moco, ``moco_v{1,2}_*ep_pretrain.pth.tar``).

``main_moco.py`` saves ``{"epoch", "arch", "state_dict", "optimizer"}``; ``state_dict`` is the
DistributedDataParallel-wrapped ``moco.builder.MoCo``: the query encoder ``module.encoder_q.`` (a torchvision
ResNet-50, whose names timm's ResNet shares), the key encoder ``module.encoder_k.``, and the queue
``module.queue`` / ``module.queue_ptr``. The backbone is the query encoder without its ``fc`` (v1: one
Linear 2048->128; v2: the MLP ``fc.0`` / ``fc.2``), as the authors' ``main_lincls.py`` loads it. The file
holds only tensors, strings, numbers and the optimizer's plain state: no globals to allow.
"""
from __future__ import annotations

from ..convert import converter, strip_prefix
from ._common import require_prefix, state_under

PREFIX = "module.encoder_q."
LAYOUT = "the MoCo v1/v2 layout, a dict with 'state_dict' holding 'module.encoder_q.' keys"


@converter("moco")
@converter("mocov2")
def moco(raw: dict) -> dict:
    """``state_dict`` -> the query encoder's keys without ``module.encoder_q.``, its ``fc`` head dropped."""
    state = state_under(raw, "state_dict", LAYOUT)
    require_prefix(state, PREFIX, LAYOUT)
    return strip_prefix(state, PREFIX, drop=("fc.",))
