"""InstDisc's release (zhirongw/lemniscate.pytorch): a DataParallel ResNet-50 and its memory bank."""
from __future__ import annotations

from ..convert import converter, returns_none, stand_in, strip_prefix
from ..registry import ZooError

# lemniscate.pytorch's main.py (PyTorch 0.3/0.4) saves the whole NCEAverage module, the memory bank,
# beside the state dict; it holds an AliasMethod (the noise sampler), and Modules of that PyTorch
# carry a `_backend` pickled as a call of the backend getter.
LEMNISCATE_ALLOWED = {
    "lib.NCEAverage.NCEAverage": stand_in("lib.NCEAverage.NCEAverage"),
    "lib.alias_multinomial.AliasMethod": stand_in("lib.alias_multinomial.AliasMethod"),
    "torch.nn.backends.thnn._get_thnn_function_backend": returns_none,
}


@converter("instdisc", allowed=LEMNISCATE_ALLOWED)
def lemniscate(raw: dict) -> dict:
    """lemniscate.pytorch: ``state_dict`` of a DataParallel ResNet (``module.``), fc 2048->128 dropped."""
    if not isinstance(raw, dict) or "state_dict" not in raw:
        found = f"keys {sorted(map(str, raw))[:8]}" if isinstance(raw, dict) else f"a {type(raw).__name__}"
        raise ZooError(f"expected the lemniscate layout, a dict with 'state_dict'; found {found}")
    return strip_prefix(raw["state_dict"], "module.", drop=("fc.",))
