"""Converters: the authors' released checkpoints, in their own layout, into the zoo format.

Each converter maps the authors' file to a timm backbone state dict; ``convert`` checks
it key by key against the architecture and exports it like a trained model.

A release is read by torch's weights-only unpickler and nothing else. Its pickle may name
only the globals its converter allows (``allowed``, data kept next to the converter), each
bound to an inert stand-in of ours: the authors' code is never imported, and a file naming
anything else is refused before any of it runs.
"""
from __future__ import annotations

import pickle  # for its exception only: files are read by torch's weights-only unpickler
import pickletools
import shutil
import tempfile
import zipfile
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch._weights_only_unpickler import _get_allowed_globals as torch_allowed_globals

from . import card, checkpoint
from .registry import ENTRIES, ZooError, suggest
from .resolve import zoo_home

# The ImageNet recipe shared by the released ResNets: 224 crops of a 256 resize.
IMAGENET_DATA = dict(input_size=(3, 224, 224), mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
                     crop_pct=0.875, interpolation="bilinear")


@dataclass(frozen=True)
class Converter:
    """How one release is read: the globals its pickle may name (or, for a release that is not a PyTorch
    file, its own ``load``), and its state dict's mapping to timm."""

    to_timm: Callable[[object], dict]
    allowed: dict[str, object]  # "module.name" the release's pickle asks for -> our inert stand-in
    load: Callable[[Path], object] | None = None  # reads a non-PyTorch release (TensorFlow, Haiku); None: read()


CONVERTERS: dict[str, Converter] = {}  # by the registry entry's method; filled by the modules of zoo.layouts


def converter(method: str, allowed: dict[str, object] | None = None, load: Callable[[Path], object] | None = None):
    """Register the decorated ``to_timm`` as the converter of ``method``'s releases (in zoo/layouts/)."""
    def register(fn):
        CONVERTERS[method] = Converter(fn, allowed or {}, load)
        return fn
    return register


class StandIn:
    """Takes the place of a class of the authors' code: it keeps the pickled state as plain data and
    has no behaviour of theirs, so reading a release never imports or runs their code."""

    def __setstate__(self, state):
        self.state = state


def stand_in(path: str) -> type:
    """A :class:`StandIn` named like the authors' class at ``path`` ("module.Class"), so reprs say what it was."""
    module, _, name = path.rpartition(".")
    return type(name, (StandIn,), {"__module__": module, "__qualname__": name})


def returns_none(*args, **kwargs) -> None:
    """Takes the place of a function a release's pickle calls to rebuild something we never use."""
    return None


def strip_prefix(state: dict, prefix: str, drop: tuple[str, ...] = ()) -> dict:
    """Keys under ``prefix`` without it, leaving out those that then start with ``drop``."""
    out = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return {k: v for k, v in out.items() if not k.startswith(drop)}


def module_class(typename, cls, source_file=None, source=None):
    """What a legacy file's ('module', class, source file, source) persistent id stands for: the class.

    :func:`_plain_pickle` turns those ids into calls of this function, which the loader allows."""
    return cls


LEGACY_PICKLES = 5  # a legacy torch.save file: magic number, protocol, sys info, the object, storage keys
_PUTS, _GETS = {"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"}, {"GET", "BINGET", "LONG_BINGET"}
_STRINGS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"}


def _walk(data: bytes):
    """The opcodes of one pickle with, for each, the string it pushes (a literal or a memo get) or None."""
    memo, last = {}, None
    for op, arg, pos in pickletools.genops(data):
        if op.name in _PUTS:
            memo[len(memo) if op.name == "MEMOIZE" else arg] = last
            continue
        value = arg if op.name in _STRINGS else memo.get(arg) if op.name in _GETS else None
        last = value if isinstance(value, str) else None
        yield op, arg, pos, last


def _globals_in(data: bytes) -> list[str]:
    """The module.name of every global one pickle imports, read statically: nothing is run."""
    names, strings = [], deque([None, None], maxlen=2)
    for op, arg, _, value in _walk(data):
        if op.name in ("GLOBAL", "INST"):
            module, name = arg.split(" ", 1)
            module, name = NAME_MAPPING.get((module, name), (IMPORT_MAPPING.get(module, module), name))
            names.append(f"{module}.{name}")
        elif op.name == "STACK_GLOBAL":
            names.append(f"{strings[-2]}.{strings[-1]}")
        if op.name != "FRAME":
            strings.append(value)
    return names


def _plain_pickle(data: bytes) -> bytes:
    """One pickle of a legacy file, with what old torch.save wrote and torch's weights-only unpickler
    refuses made plain, statically: each pickled Module's class was a persistent id ('module', class,
    source file, source), now a call of :func:`module_class` (the class itself is still checked
    against the allow-list), and Python 2's long strings (BINSTRING) become the same bytes as BINUNICODE."""
    call = f"c{module_class.__module__}\n{module_class.__name__}\n".encode()
    edits, marks, closed = [], [], None  # (position, bytes replaced, new bytes); open MARKs; the tuple just closed
    for op, _, pos, value in _walk(data):
        if marks and marks[-1][1] is Ellipsis:
            marks[-1][1] = value  # the first item after a MARK: "module" in a Module's persistent id
        if op.name == "BINSTRING":
            edits.append((pos, 1, pickle.BINUNICODE))
        elif op.name == "BINPERSID" and closed and closed[1] == "module":
            edits += [(closed[0], 0, call), (pos, 1, pickle.REDUCE)]
        if pickletools.markobject in op.stack_before:
            mark = marks.pop() if marks else None
            closed = mark if op.name == "TUPLE" else None
        elif op.name != "FRAME":
            closed = None
        if op.name == "MARK":
            marks.append([pos, Ellipsis])
    out, at = [], 0
    for pos, length, new in sorted(edits):
        out += [data[at:pos], new]
        at = pos + length
    return b"".join(out + [data[at:]])


def _next_pickle(file) -> bytes:
    start = file.tell()
    for _ in pickletools.genops(file):
        pass
    end = file.tell()
    file.seek(start)
    return file.read(end - start)


def _is_zip(src: Path) -> bool:
    with open(src, "rb") as file:
        return file.read(4) == b"PK\x03\x04"


def pickled_globals(src: Path) -> list[str]:
    """Every module.name the pickles of a torch.save file (zip or legacy) import, read without running them."""
    names = []
    try:
        if _is_zip(src):
            with zipfile.ZipFile(src) as archive:
                for member in archive.namelist():
                    if member.endswith(".pkl"):
                        names += _globals_in(archive.read(member))
        else:
            with open(src, "rb") as file:
                for _ in range(LEGACY_PICKLES):
                    names += _globals_in(_next_pickle(file))
    except (ValueError, EOFError, zipfile.BadZipFile):
        pass  # a damaged file: the names read before the damage are all it can tell
    return names


@contextmanager
def _loadable(src: Path):
    """``src`` as torch's weights-only unpickler can take it: a zip file as it is, a legacy file as a
    temporary copy whose pickles are made plain (:func:`_plain_pickle`); its tensor data follows unchanged."""
    if _is_zip(src):
        yield src
        return
    with open(src, "rb") as file, tempfile.TemporaryFile() as copy:
        try:
            pickles = b"".join(_plain_pickle(_next_pickle(file)) for _ in range(LEGACY_PICKLES))
        except (ValueError, EOFError):  # not pickles we can parse: torch will say what is wrong with the file
            yield src
            return
        copy.write(pickles)
        shutil.copyfileobj(file, copy)
        copy.seek(0)
        yield copy


def read(src: Path, allowed: dict[str, object], release: str = "") -> object:
    """Load an authors' checkpoint with torch's weights-only unpickler, ``allowed`` globals bound to stand-ins.

    A file whose pickle asks for any other global is refused with a ZooError naming them."""
    safe = [(obj, name) for name, obj in allowed.items()] + [module_class]
    with torch.serialization.safe_globals(safe), _loadable(src) as file:
        try:
            return torch.load(file, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            lines = [line for line in str(error).splitlines() if line.strip()]
            refusal = " ".join(lines[1:-1] or lines)[:300]  # torch's reason, between its general advice
        except (RuntimeError, EOFError) as error:  # not a torch.save file, or a truncated one
            raise ZooError(f"{src} is not a readable PyTorch checkpoint ({type(error).__name__}: "
                           f"{str(error).splitlines()[0][:160]}). Fix: download it again"
                           + (f" from {release}." if release else ".")) from None
    known = set(allowed) | set(torch_allowed_globals()) | {f"{module_class.__module__}.{module_class.__name__}"}
    asked = sorted(set(pickled_globals(src)) - known)
    what = (f"its pickle asks for {', '.join(asked)}, which its converter does not allow"
            if asked else f"torch's weights-only loader refused it ({refusal})")
    raise ZooError(f"{src} is not a known release layout: {what}. Nothing it names was imported or run. Fix: "
                   f"use the authors' own file{' (' + release + ')' if release else ''}; if it is theirs, the "
                   "converter's allow-list in zoo/layouts/ lacks these names, each to be bound to an inert stand-in.")


def convert(name: str, src: Path, out: Path | None = None) -> Path:
    """Turn the authors' checkpoint ``src`` for zoo entry ``name`` into a zoo checkpoint folder."""
    if name not in ENTRIES or ENTRIES[name].source != "authors":
        authors = [n for n, e in ENTRIES.items() if e.source == "authors"]
        raise ZooError(f"No converter for {name!r}. {suggest(name, authors)}")
    entry, src = ENTRIES[name], Path(src)
    if not src.is_file():
        raise ZooError(f"{src} does not exist. Download the authors' checkpoint from {entry.release}.")
    from . import layouts  # noqa: F401  (registers every release layout's converter)

    reader = CONVERTERS[entry.method]
    raw = reader.load(src) if reader.load else read(src, reader.allowed, entry.release)
    state = reader.to_timm(raw)
    model = timm.create_model(entry.arch, pretrained=False, num_classes=0, **entry.model_args)
    checkpoint.check_state_dict(model.state_dict(), state, f"{src} after the {entry.method} conversion")
    model.load_state_dict(state)
    return checkpoint.save(model, Path(out) if out else zoo_home() / name,
                           data_config={**IMAGENET_DATA, **entry.preprocessing},
                           model_args=entry.model_args, card=card.for_entry(entry))
