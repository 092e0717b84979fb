"""The checkpoint is the contract: the Hugging Face Hub layout that timm reads itself.

A checkpoint is a folder with ``config.json`` (timm architecture, ``num_classes: 0``,
``model_args`` and a ``pretrained_cfg`` whose mean/std/input size are this model's own),
``model.safetensors`` (the backbone's state dict) and ``README.md`` (the model card).
``timm.create_model("local-dir:FOLDER", pretrained=True)`` loads it without this package.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import safetensors.torch
import timm
import torch
from timm.models import save_for_hf

from .registry import ZooError

CONFIG, WEIGHTS, CARD = "config.json", "model.safetensors", "README.md"


def is_checkpoint(folder: Path) -> bool:
    folder = Path(folder)
    return (folder / CONFIG).is_file() and (folder / WEIGHTS).is_file()


def read_config(folder: Path) -> dict:
    return json.loads((Path(folder) / CONFIG).read_text())


@contextmanager
def atomic_folder(folder: Path):
    """Yield a staging folder that replaces ``folder`` on success: a crash leaves the old or the new, never half."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        yield staging
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            staging.rename(folder)
            shutil.rmtree(old)
        else:
            staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def save(model: torch.nn.Module, folder: Path, *, data_config: dict, card: str, model_args: dict | None = None) -> Path:
    """Write ``model`` (a timm backbone with no classifier) to ``folder``, atomically.

    ``data_config`` holds the preprocessing the weights were trained with (input_size,
    mean, std, crop_pct, interpolation); it becomes the config's pretrained_cfg. ``model_args``
    are the keyword arguments the model was created with; timm passes them back when it loads.
    """
    if getattr(model, "num_classes", None) != 0:
        raise ValueError("export a backbone: call model.reset_classifier(0) first")
    stock = model.pretrained_cfg  # timm's default tag (ImageNet weights, licence, paper): not ours
    model.pretrained_cfg = {**{k: stock[k] for k in ("architecture", "first_conv", "classifier") if k in stock},
                            **data_config}
    try:
        with atomic_folder(folder) as staging:
            save_for_hf(model, staging, safe_serialization=True, data_config=data_config,
                        model_args=model_args or None)
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


def load(folder: Path, num_classes: int = 0, **kwargs) -> torch.nn.Module:
    """Build the timm model described by ``folder``'s config and load its weights.

    ``num_classes > 0`` adds a freshly initialised classifier for fine-tuning.
    """
    folder = Path(folder)
    model = timm.create_model(f"local-dir:{folder}", pretrained=False, **kwargs)
    state = safetensors.torch.load_file(folder / WEIGHTS)
    check_state_dict(model.state_dict(), state, f"{folder / WEIGHTS} ({read_config(folder)['architecture']})")
    model.load_state_dict(state)
    if num_classes:
        model.reset_classifier(num_classes)
    return model.eval()
