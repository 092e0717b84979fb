"""What the PyTorch release layouts share: finding the state dict in the loaded file, and saying what was
found when a file is not in the layout its converter expects."""
from __future__ import annotations

import torch

from ..registry import ZooError

FIX = ("Fix: pass the authors' pre-training checkpoint of this model as the registry's release names it "
       "(`python -m zoo info NAME`), not a linear-classifier, fine-tuned or re-saved file.")


def found(raw: object) -> str:
    """A short account of a loaded object for an error message: its type, or a dict's first keys."""
    if not isinstance(raw, dict):
        return f"a {type(raw).__name__}"
    keys = [str(key) for key in raw]
    shown = ", ".join(repr(key) for key in keys[:8])
    return f"a dict of {len(keys)} keys ({shown}{', ...' if len(keys) > 8 else ''})"


def refuse(layout: str, raw: object) -> ZooError:
    return ZooError(f"expected {layout}; found {found(raw)}. {FIX}")


def is_state_dict(raw: object) -> bool:
    """A non-empty dict whose keys are strings and whose values are all tensors."""
    return (isinstance(raw, dict) and bool(raw)
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in raw.items()))


def state_under(raw: object, key: str, layout: str) -> dict:
    """``raw[key]``, the state dict a training script saved beside its other entries, or a ZooError."""
    if not isinstance(raw, dict) or not is_state_dict(raw.get(key)):
        raise refuse(layout, raw)
    return raw[key]


def require_prefix(state: dict, prefix: str, layout: str) -> None:
    """Refuse a state dict none of whose keys start with ``prefix`` (the module the backbone lives in)."""
    if not any(key.startswith(prefix) for key in state):
        raise refuse(layout, state)


def strip_leading(state: dict, prefixes: tuple[str, ...]) -> dict:
    """Each key without whichever of ``prefixes`` it starts with, in order (``module.`` then ``backbone.``)."""
    out = {}
    for key, value in state.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out
