"""SimSiam's release (facebookresearch/simsiam, ``100ep/pretrain/checkpoint_0099.pth.tar``).

``main_simsiam.py`` saves ``{"epoch", "arch", "state_dict", "optimizer"}``; ``state_dict`` is the
DistributedDataParallel-wrapped ``simsiam.builder.SimSiam``: the encoder ``module.encoder.`` (a torchvision
ResNet-50 whose ``fc`` was replaced by the 3-layer projector ``fc.0`` ... ``fc.7``) and the predictor
``module.predictor.``. The backbone is the encoder without ``fc``, as the authors' ``main_lincls.py``
loads it. No globals to allow.
"""
from __future__ import annotations

from ..convert import converter, strip_prefix
from ._common import require_prefix, state_under

PREFIX = "module.encoder."
LAYOUT = "the SimSiam layout, a dict with 'state_dict' holding 'module.encoder.' keys"


@converter("simsiam")
def simsiam(raw: dict) -> dict:
    """``state_dict`` -> the encoder's keys without ``module.encoder.``, the projector (``fc.``) dropped."""
    state = state_under(raw, "state_dict", LAYOUT)
    require_prefix(state, PREFIX, LAYOUT)
    return strip_prefix(state, PREFIX, drop=("fc.",))
