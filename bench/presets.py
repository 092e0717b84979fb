"""The methods a Fashion-MNIST benchmark can train: those with an ``fmnist`` preset, and the ``--methods``
argument that names some of them (one check for every benchmark that takes it)."""
from __future__ import annotations

import argparse

from train.methods import METHODS


def methods_with_preset() -> list[str]:
    return [name for name, module in METHODS.items() if "fmnist" in module.PRESETS]


def parse_methods(text: str) -> list[str]:
    """``--methods a,b``: each a method of train.methods with an ``fmnist`` preset."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in METHODS:
            raise argparse.ArgumentTypeError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
        if "fmnist" not in METHODS[name].PRESETS:
            raise argparse.ArgumentTypeError(f"{name} has no 'fmnist' preset; choose from "
                                             f"{', '.join(methods_with_preset())}")
    if not names:
        raise argparse.ArgumentTypeError("name at least one method, e.g. --methods instdisc,invaspread")
    return names
