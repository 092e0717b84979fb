"""CMC's release (HobbitLong/CMC, ``CMC_resnet50v1.pth`` in the authors' Dropbox folder).

``train_CMC.py`` saves ``{"opt", "model", "contrast", "optimizer", "epoch"[, "amp"]}``. ``model`` is the
state dict of ``models.resnet.MyResNetsCMC('resnet50v1')``, which holds a DataParallel ``ResNetV1``: keys
``encoder.module.l_to_ab.`` (the ResNet-50 of the L channel) and ``encoder.module.ab_to_l.`` (that of the
ab channels), each the authors' ResNet at width 0.5 (64-channel stem, stages 32/64/128/256 wide, torchvision's
names) with an ``fc`` 1024->128 embedding, dropped here. A file re-saved without the outer wrapper
(``module.l_to_ab.`` or ``l_to_ab.``) is read the same way. The streams become ``zoo.streams``'
``cmc_resnet50`` ``l.`` and ``ab.``. The weights were trained with apex's ``amp`` (O2), which keeps
convolutions in float16: every floating tensor is cast to float32. ``opt`` is an ``argparse.Namespace``,
read as an inert stand-in; ``contrast`` (the memory banks) and ``amp`` (the loss scale) are plain data.
"""
from __future__ import annotations

import re

from ..convert import converter, stand_in
from ._common import refuse, state_under

CMC_ALLOWED = {"argparse.Namespace": stand_in("argparse.Namespace")}  # the checkpoint's "opt"
LAYOUT = "the CMC layout, a dict with 'model' holding 'encoder.module.l_to_ab.' and 'encoder.module.ab_to_l.' keys"
STREAM = re.compile(r"(?:module\.)?(?:encoder\.)?(?:module\.)?(l_to_ab|ab_to_l)\.(.+)")
STREAMS = {"l_to_ab": "l", "ab_to_l": "ab"}  # the authors' stream -> the view zoo.streams gives it


@converter("cmc", allowed=CMC_ALLOWED)
def cmc(raw: dict) -> dict:
    """``model`` -> ``l.`` / ``ab.`` keys in float32, each stream's ``fc`` dropped; other keys are kept as
    they are, so the architecture check names them."""
    state = state_under(raw, "model", LAYOUT)
    out = {}
    for key, value in state.items():
        match = STREAM.fullmatch(key)
        if match:
            if match[2].startswith("fc."):
                continue
            key = f"{STREAMS[match[1]]}.{match[2]}"
        out[key] = value.float() if value.is_floating_point() else value
    if not any(key.startswith(("l.", "ab.")) for key in out):
        raise refuse(LAYOUT, state)
    return out
