"""The methods a Fashion-MNIST benchmark can train: those with an ``fmnist`` preset, and the ``--methods``
argument that names some of them (one check for every benchmark that takes it); the other comma-separated lists
of names the benchmarks take (claims, parts)."""
from __future__ import annotations

import argparse
from collections.abc import Callable

from train.methods import METHODS


def methods_with_preset() -> list[str]:
    return [name for name, module in METHODS.items() if "fmnist" in module.PRESETS]


def comma_names(kind: str, known) -> Callable[[str], list[str]]:
    """An argparse type for a comma-separated list of names, each one of ``known`` (named ``kind`` in the error)."""
    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"unknown {kind} {', '.join(unknown) or '(none)'}; choose from "
                                             f"{', '.join(known)}")
        return names
    return parse


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


def step_rounds_parser(prog: str, description: str, default: str) -> argparse.ArgumentParser:
    """The arguments of a benchmark that times each method's step in interleaved rounds against a variant of it
    (``bench.layout``, ``bench.compile_gain``)."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", type=parse_methods, default=default,
                        help=f"comma-separated methods with an fmnist preset (default: {default})")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-write", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    return parser
