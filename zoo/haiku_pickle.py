"""Reading a pickled tree of numpy arrays (a JAX/Haiku release such as BYOL's) without JAX, Haiku or dill.

The file is read by PyTorch's weights-only unpickler, the one every release of this zoo goes through
(``zoo.convert.read``): it runs no code of the file's choosing, only calls the globals it is told to allow.
Here those are numpy's array rebuilders (``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``,
``numpy.dtype``, ``numpy.core.multiarray.scalar``, under numpy 1's and numpy 2's ``numpy._core`` module
names), ``_codecs.encode`` (how protocol 2 pickles bytes, allowed by PyTorch), the empty ``bytes()``, and
the inert stand-ins a release's converter passes for its own containers. Any other global is refused
before anything runs, with its name. Only numeric arrays are rebuilt: object and structured dtypes are refused.

It reads pickle protocol 2, which BYOL's checkpointing (``dill.dump(..., protocol=2)``) writes; later
protocols use opcodes the weights-only unpickler does not implement, and are refused by name.
"""
from __future__ import annotations

import pickle  # for its exception and IMPORT_MAPPING only: files are read by torch's weights-only unpickler
import pickletools
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from pathlib import Path

import numpy as np
import torch
from torch import _weights_only_unpickler as weights_only

from .registry import ZooError

PROTOCOL = 2
NUMERIC_DTYPES = "?bBhHiIlLqQefdgFDG"  # bool, (unsigned) integers, floats, complex: numpy's dtype.char


def empty_bytes(*args) -> bytes:
    """Protocol 2 pickles ``b""`` as a call of ``bytes()``; any argument (``bytes(10**12)``) is refused."""
    if args:
        raise pickle.UnpicklingError(f"bytes{args!r:.40} is not how a pickle spells an empty bytes object")
    return b""


def numpy_globals() -> dict[str, object]:
    """The globals a pickle of numpy arrays names, under numpy 1's and numpy 2's module names, bound to this
    numpy's objects; and each numeric dtype's class, which rebuilding a dtype sets the state of."""
    rebuild_array = np.zeros(1).__reduce__()[0]  # numpy.(_)core.multiarray._reconstruct
    rebuild_scalar = np.float32(0).__reduce__()[0]  # numpy.(_)core.multiarray.scalar
    allowed: dict[str, object] = {"numpy.ndarray": np.ndarray, "numpy.dtype": np.dtype, "builtins.bytes": empty_bytes}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[f"{module}._reconstruct"] = rebuild_array
        allowed[f"{module}.scalar"] = rebuild_scalar
    for char in NUMERIC_DTYPES:
        kind = type(np.dtype(char))
        allowed[f"{kind.__module__}.{kind.__qualname__}"] = kind
    return allowed


def pickled_globals(file) -> list[str]:
    """The module.name of every global a protocol-2 pickle imports, read statically: nothing is run."""
    names = []
    try:
        for op, arg, _ in pickletools.genops(file):
            if op.name in ("GLOBAL", "INST"):
                module, name = arg.split(" ", 1)
                module, name = NAME_MAPPING.get((module, name), (IMPORT_MAPPING.get(module, module), name))
                names.append(f"{module}.{name}")
    except (ValueError, EOFError):
        pass  # a damaged file: the names read before the damage are all it can tell
    return names


def read(path: Path | str, allowed: dict[str, object] | None = None, release: str = "") -> object:
    """The object pickled in ``path``: dicts, lists, tuples, numbers, strings and numpy arrays, and whatever
    the stand-ins in ``allowed`` ({"module.name" the pickle asks for: our inert object}) make of theirs.
    A file asking for any other global, or not a protocol-2 pickle, is refused with a ZooError."""
    path = Path(path)
    allowed = {**numpy_globals(), **(allowed or {})}
    fix = f"Fix: use the authors' own file{' (' + release + ')' if release else ''}"
    with open(path, "rb") as file:
        head = file.read(2)
        if len(head) < 2 or head[0] != pickle.PROTO[0]:
            raise ZooError(f"{path} is not a pickle of protocol 2 or later (it starts with {head!r}). {fix}.")
        if head[1] != PROTOCOL:
            raise ZooError(f"{path} is a pickle of protocol {head[1]}; this reader (PyTorch's weights-only "
                           f"unpickler) reads protocol {PROTOCOL}, which the release was written with. Nothing in "
                           f"it was run. {fix}, or re-save it with pickle protocol 2.")
        file.seek(0)
        try:
            with torch.serialization.safe_globals([(obj, name) for name, obj in allowed.items()]):
                return weights_only.load(file, encoding="latin1")
        except pickle.UnpicklingError as error:
            reason = str(error).splitlines()[0][:200]
        except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as error:
            raise ZooError(f"{path} is not a readable pickle ({type(error).__name__}: {str(error)[:160]}; "
                           f"truncated or damaged). Nothing in it was run. {fix}: download it again.") from None
        file.seek(0)
        asked = sorted(set(pickled_globals(file)) - set(allowed) - {"_codecs.encode"})
    what = (f"its pickle asks for {', '.join(asked)}, which its converter does not allow" if asked
            else f"the weights-only unpickler refused it ({reason})")
    raise ZooError(f"{path} is not a known release layout: {what}. Nothing it names was imported or run. "
                   f"{fix}; if it is theirs, the converter's allow-list in zoo/layouts/ lacks these names, each to "
                   "be bound to an inert stand-in.")
