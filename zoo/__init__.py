"""The contrastive model zoo: named self-supervised timm backbones, ready for features or fine-tuning.

    import zoo
    model = zoo.load("instdisc-resnet18-fmnist")            # timm model, pooled features
    model = zoo.load("instdisc-resnet18-fmnist", num_classes=10)  # fresh head for fine-tuning
    transform = zoo.transforms("instdisc-resnet18-fmnist")  # PIL image -> tensor
"""
from __future__ import annotations

import torch

from . import architectures, patches, projected, streams  # noqa: F401  (register the zoo's own timm architectures)
from . import checkpoint
from .registry import ENTRIES, Entry, ZooError
from .resolve import known_names, resolve, zoo_home

__all__ = ["load", "list_models", "info", "transforms", "resolve", "zoo_home", "ZooError", "Entry"]


def load(name: str, num_classes: int = 0, **kwargs) -> torch.nn.Module:
    """The timm model ``name`` (registry name or checkpoint folder) with its weights, in eval mode.

    ``num_classes > 0`` gives a freshly initialised classifier for fine-tuning; other
    keyword arguments go to ``timm.create_model`` (e.g. ``drop_path_rate``).
    """
    return checkpoint.load(resolve(name), num_classes=num_classes, **kwargs)


def list_models() -> list[str]:
    """Every name ``load`` knows: the registry and the checkpoints in the local zoo folder."""
    return known_names()


def info(name: str) -> dict:
    """What ``name`` is and where its weights are, without downloading anything."""
    entry = ENTRIES.get(name)
    out = {"name": name}
    if entry:
        out.update(method=entry.method, arch=entry.arch, dataset=entry.dataset, source=entry.source,
                   hub_id=entry.hub_id, paper=entry.paper.url, description=entry.description)
    try:
        folder = resolve(name, download=False)
    except ZooError as error:
        if not entry:
            raise
        out["weights"] = f"not on this machine ({error})"
        return out
    config = checkpoint.read_config(folder)
    cfg = config["pretrained_cfg"]
    out.update(weights=str(folder), arch=config["architecture"], num_features=config.get("num_features"),
               input_size=tuple(cfg["input_size"]), mean=tuple(cfg["mean"]), std=tuple(cfg["std"]))
    card = folder / checkpoint.CARD
    if card.is_file():
        from huggingface_hub import ModelCard
        results = ModelCard.load(card).data.eval_results or []
        out["metrics"] = {f"{r.metric_name} ({r.dataset_name})": r.metric_value for r in results}
    return out


class ToRGB:
    """Convert any PIL image (grayscale, palette, RGBA, ...) to the RGB the backbones take."""

    def __call__(self, image):
        return image if image.mode == "RGB" else image.convert("RGB")

    def __repr__(self):  # stable across processes: a bank's fingerprint holds the transform's repr
        return "ToRGB()"


def transforms(name: str, training: bool = False):
    """The preprocessing that ``name`` was trained with, as a torchvision transform of PIL images."""
    from timm.data import create_transform, resolve_data_config
    from torchvision.transforms import Compose

    cfg = checkpoint.read_config(resolve(name))["pretrained_cfg"]
    data = resolve_data_config(pretrained_cfg=cfg)
    return Compose([ToRGB(), create_transform(**data, is_training=training)])
