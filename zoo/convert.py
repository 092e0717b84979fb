"""Converters: the authors' released checkpoints, in their own layout, into the zoo format.

Each converter maps the authors' file to a timm backbone state dict; ``convert`` checks
it key by key against the architecture and exports it like a trained model.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Callable

import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from . import card, checkpoint
from .registry import ENTRIES, ZooError, suggest
from .resolve import zoo_home

CONVERTERS: dict[str, Callable[[dict], dict]] = {}

# The ImageNet recipe shared by the released ResNets: 224 crops of a 256 resize.
IMAGENET_DATA = dict(input_size=(3, 224, 224), mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
                     crop_pct=0.875, interpolation="bilinear")


def converter(method: str):
    def register(fn):
        CONVERTERS[method] = fn
        return fn
    return register


def strip_prefix(state: dict, prefix: str, drop: tuple[str, ...] = ()) -> dict:
    """Keys under ``prefix`` without it, leaving out those that then start with ``drop``."""
    out = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return {k: v for k, v in out.items() if not k.startswith(drop)}


@converter("instdisc")
def lemniscate(raw: dict) -> dict:
    """lemniscate.pytorch: ``state_dict`` of a DataParallel ResNet (``module.``), fc 2048->128 dropped."""
    if "state_dict" not in raw:
        raise ZooError(f"expected the lemniscate layout, a dict with 'state_dict'; found keys {sorted(raw)[:8]}")
    return strip_prefix(raw["state_dict"], "module.", drop=("fc.",))


class _Placeholder:
    """Stands in for an object of the authors' code (e.g. lemniscate's NCEAverage) that we never use."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state


class _PlaceholderUnpickler(pickle.Unpickler):
    """Rebuilds tensors and containers; every other class becomes an inert placeholder."""

    SAFE_ROOTS = {"torch", "collections", "numpy", "copyreg", "_codecs"}
    SAFE_BUILTINS = {"set", "frozenset", "slice", "complex", "bytearray", "dict", "list", "tuple", "int", "float"}

    def find_class(self, module, name):
        if module.split(".")[0] in self.SAFE_ROOTS or (module == "builtins" and name in self.SAFE_BUILTINS):
            try:
                return super().find_class(module, name)
            except (ImportError, AttributeError):
                pass
        return type(name, (_Placeholder,), {"__module__": module})


class _placeholder_pickle:  # the pickle_module interface torch.load expects
    Unpickler = _PlaceholderUnpickler
    load = staticmethod(pickle.load)


def read(src: Path) -> dict:
    """Load an authors' checkpoint safely: tensors only, or placeholders for their pickled objects."""
    try:
        return torch.load(src, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        return torch.load(src, map_location="cpu", weights_only=False, pickle_module=_placeholder_pickle)


def convert(name: str, src: Path, out: Path | None = None) -> Path:
    """Turn the authors' checkpoint ``src`` for zoo entry ``name`` into a zoo checkpoint folder."""
    if name not in ENTRIES or ENTRIES[name].source != "authors":
        authors = [n for n, e in ENTRIES.items() if e.source == "authors"]
        raise ZooError(f"No converter for {name!r}. {suggest(name, authors)}")
    entry, src = ENTRIES[name], Path(src)
    if not src.is_file():
        raise ZooError(f"{src} does not exist. Download the authors' checkpoint from {entry.release}.")
    state = CONVERTERS[entry.method](read(src))
    model = timm.create_model(entry.arch, pretrained=False, num_classes=0)
    checkpoint.check_state_dict(model.state_dict(), state, f"{src} after the {entry.method} conversion")
    model.load_state_dict(state)
    return checkpoint.save(model, Path(out) if out else zoo_home() / name, data_config=IMAGENET_DATA,
                           card=card.for_entry(entry))
