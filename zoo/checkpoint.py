"""The checkpoint is the contract: the Hugging Face Hub layout that timm reads itself.

A checkpoint is a folder with ``config.json`` (timm architecture, ``num_classes: 0``,
``model_args`` and a ``pretrained_cfg`` whose mean/std/input size are this model's own),
``model.safetensors`` (the backbone's state dict) and ``README.md`` (the model card).
``timm.create_model("local-dir:FOLDER", pretrained=True)`` loads it without this package.
"""
from __future__ import annotations

import copy
import ctypes
import errno
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import safetensors.torch
import timm
import torch
from timm.models import save_for_hf

from .registry import ZooError

CONFIG, WEIGHTS, CARD = "config.json", "model.safetensors", "README.md"
TRAINING = "training.json"  # beside a model trained here: its recipe, curve and minutes (the leaderboard reads it)


def is_checkpoint(folder: Path) -> bool:
    folder = Path(folder)
    return (folder / CONFIG).is_file() and (folder / WEIGHTS).is_file()


def read_config(folder: Path) -> dict:
    return json.loads((Path(folder) / CONFIG).read_text())


@contextmanager
def atomic_folder(folder: Path, *, owned: Callable[[Path], bool], what: str):
    """Yield a staging folder that takes ``folder``'s place when the block succeeds.

    ``folder`` may be missing, empty, or a ``what`` of this project (``owned(folder)``): anything else
    is a user's folder and is refused with a ZooError, never deleted. Writers of one folder take turns
    (an flock on ``.NAME.lock`` beside it); the staged files reach the disk before the swap, and the
    swap is one atomic exchange where Linux offers it, else two renames that the next writer or reader
    completes (:func:`recover`): a kill at any moment leaves the old folder or the new one at the path.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _locked(folder):
        _restore(folder)
        _check_replaceable(folder, owned, what)
        _sweep_staging(folder)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.staging-", dir=folder.parent))
        try:
            yield staging
            _fsync_tree(staging)
            _swap(staging, folder)
        finally:
            _remove(staging)


def recover(folder: Path) -> None:
    """Put ``.NAME.old`` back at ``folder`` if a writer was killed between its two renames; readers call this."""
    folder = Path(folder)
    if not os.path.lexists(folder) and _old(folder).is_dir():
        with _locked(folder):
            _restore(folder)


def _old(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.old")


@contextmanager
def _locked(folder: Path):
    with open(folder.with_name(f".{folder.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or when its process dies
        yield


def _restore(folder: Path) -> None:
    """Under the lock: undo the first of the two renames of a killed :func:`_swap`."""
    if not os.path.lexists(folder) and _old(folder).is_dir():
        _old(folder).rename(folder)
        fsync(folder.parent)


def _check_replaceable(folder: Path, owned: Callable[[Path], bool], what: str) -> None:
    if not os.path.lexists(folder) or (folder.is_dir() and not any(folder.iterdir())) or owned(folder):
        return
    if folder.is_dir():
        names = sorted(p.name for p in folder.iterdir())
        found = f"holds {len(names)} entries ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})"
    else:
        found = "is a file"
    raise ZooError(f"{folder} already exists and is not a {what}: it {found}. Nothing was written to it or "
                   f"deleted from it. Fix: choose another output folder (--out), or empty or remove {folder} yourself.")


def _sweep_staging(folder: Path) -> None:
    """Under the lock: remove the staging folders of killed writers (only a holder of the lock makes them)."""
    stale = re.compile(re.escape(f".{folder.name}.staging-") + r"[a-z0-9_]{8}")
    for path in folder.parent.iterdir():
        if stale.fullmatch(path.name):
            _remove(path)


def _swap(staging: Path, folder: Path) -> None:
    """Put ``staging`` at ``folder``. A kill between the two renames of the fallback leaves only ``.NAME.old``,
    which :func:`_restore` puts back."""
    if os.path.lexists(folder) and _exchange(staging, folder):
        fsync(folder.parent)
        _remove(staging)  # now the old folder
        return
    old = _old(folder)
    if os.path.lexists(folder):
        _remove(old)  # left by a writer killed after its swap: ``folder`` is whole
        os.rename(folder, old)
    os.rename(staging, folder)
    fsync(folder.parent)
    _remove(old)


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


@functools.cache
def _renameat2():
    """libc's renameat2 (Linux, glibc 2.28+), or None."""
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError, TypeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return function


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step; False where the kernel or the filesystem cannot."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(error, os.strerror(error), str(b))


def sha256_of(path: Path) -> str:
    """The SHA-256 hex digest of the file ``path``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def fsync(path: Path) -> None:
    """Flush ``path`` (a file or a folder's entries) to the disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_tree(root: Path) -> None:
    """Flush every file and folder under ``root``, so that no swap exposes data still in the page cache."""
    for path in sorted(root.rglob("*"), key=lambda p: -len(p.parts)):
        fsync(path)
    fsync(root)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        path.unlink()


def save(model: torch.nn.Module, folder: Path, *, data_config: dict, card: str, model_args: dict | None = None,
         label_names: list[str] | None = None) -> Path:
    """Write ``model`` (a timm backbone with no classifier) to ``folder``, atomically.

    ``data_config`` holds the preprocessing the weights were trained with (input_size,
    mean, std, crop_pct, interpolation); it becomes the config's pretrained_cfg. ``model_args``
    are the keyword arguments the model was created with; timm passes them back when it loads.
    A fine-tuned model keeps its classifier, whose classes ``label_names`` name.
    """
    classes = len(label_names) if label_names else 0
    if getattr(model, "num_classes", None) != classes:
        raise ValueError(f"the model has {getattr(model, 'num_classes', None)} outputs for {classes} label names: "
                         "export a backbone (model.reset_classifier(0)) or name every class of its classifier")
    if not all(t.is_contiguous() for t in model.state_dict().values()):  # e.g. a channels-last model in training
        model = copy.deepcopy(model).to(memory_format=torch.contiguous_format)  # safetensors stores dense tensors
    stock = model.pretrained_cfg  # timm's default tag (ImageNet weights, licence, paper): not ours
    model.pretrained_cfg = {**{k: stock[k] for k in ("architecture", "first_conv", "classifier") if k in stock},
                            **data_config}
    try:
        with atomic_folder(folder, owned=is_checkpoint, what="zoo checkpoint") as staging:
            save_for_hf(model, staging, safe_serialization=True, data_config=data_config,
                        # a classifier added after creation: its size is the model's, not the factory's
                        model_args={**(model_args or {}), "num_classes": classes} if classes else model_args or None,
                        model_config=dict(label_names=list(label_names)) if label_names else None)
            (staging / CARD).write_text(card)
    finally:
        model.pretrained_cfg = stock
    return Path(folder)


def check_state_dict(expected: dict, found: dict, where: str) -> None:
    """Raise a ZooError naming every key and shape that differs between model and file."""
    missing = sorted(expected.keys() - found.keys())
    unexpected = sorted(found.keys() - expected.keys())
    shapes = [f"{k} (file {tuple(found[k].shape)}, model {tuple(expected[k].shape)})"
              for k in sorted(expected.keys() & found.keys()) if found[k].shape != expected[k].shape]
    if not (missing or unexpected or shapes):
        return
    parts = []
    for label, keys in (("missing from the file", missing), ("not in the model", unexpected),
                        ("with other shapes", shapes)):
        if keys:
            parts.append(f"{len(keys)} {label}: " + ", ".join(keys[:6]) + (", ..." if len(keys) > 6 else ""))
    raise ZooError(f"{where} does not match its architecture; keys differ: " + "; ".join(parts)
                   + ". Fix: make config.json name the architecture these weights were trained with, "
                     "or re-export them with `python -m zoo convert`.")


def read_weights(folder: Path) -> tuple[dict, str]:
    """The state dict in ``folder``'s weights file and the sha256 of exactly the bytes it was read from
    (hashing the file separately could see another version of it than the one loaded)."""
    path = Path(folder) / WEIGHTS
    data = path.read_bytes()
    try:
        state = safetensors.torch.load(data)
    except Exception as error:  # truncated or overwritten: the header or the tensor sizes disagree
        raise ZooError(f"{path} is damaged ({type(error).__name__}: {str(error)[:120]}). Fix: export, convert or "
                       "download this checkpoint again.") from None
    return state, hashlib.sha256(data).hexdigest()


def load_with_digest(folder: Path, num_classes: int = 0, **kwargs) -> tuple[torch.nn.Module, str]:
    """:func:`load`, and the sha256 of the weights file it loaded (what a feature bank is tied to)."""
    folder = Path(folder)
    try:
        model = timm.create_model(f"local-dir:{folder}", pretrained=False, **kwargs)
    except (RuntimeError, TypeError, KeyError, ValueError) as error:  # unknown architecture or model_args
        raise ZooError(f"{folder / CONFIG} describes a model timm {timm.__version__} cannot build ({error}). "
                       "Fix: correct its architecture and model_args, or upgrade timm.") from None
    state, digest = read_weights(folder)
    check_state_dict(model.state_dict(), state, f"{folder / WEIGHTS} ({read_config(folder)['architecture']})")
    model.load_state_dict(state)
    if num_classes:
        model.reset_classifier(num_classes)
    return model.eval(), digest


def load(folder: Path, num_classes: int = 0, **kwargs) -> torch.nn.Module:
    """Build the timm model described by ``folder``'s config and load its weights.

    ``num_classes > 0`` adds a freshly initialised classifier for fine-tuning.
    """
    return load_with_digest(folder, num_classes, **kwargs)[0]
