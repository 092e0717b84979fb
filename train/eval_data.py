"""Labelled images for evaluating any zoo model, and their features, extracted once and cached.

``fashion-mnist``, or a folder: an ImageFolder with ``train/`` and ``val/`` (class sub-folders in
each), or a single ImageFolder that a seeded fraction splits. Every image goes through the model's
own preprocessing (timm's evaluation transform from its pretrained_cfg), so an ImageNet ResNet-50 sees
Fashion-MNIST at 224 px and a 32-px zoo model at 32 px; the resolution is part of every result.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

import zoo
import zoo.data

from .data import Mapped, labels

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


class EvalDataError(ValueError):
    """A dataset that cannot be evaluated on; the message names the problem and the fix."""


class FashionMNIST(Dataset):
    """Fashion-MNIST as (RGB PIL image, label), for timm's transforms."""

    def __init__(self, train: bool):
        self.split = zoo.data.fashion_mnist(train)
        self.targets = self.split.targets

    def __len__(self):
        return len(self.split.targets)

    def __getitem__(self, index):
        return Image.fromarray(self.split.data[index].numpy()).convert("RGB"), int(self.split.targets[index])


def transformed(dataset: Dataset, transform) -> Mapped:
    """(transform(RGB image), label) of a dataset of (PIL image of any mode, label)."""
    from torchvision import transforms

    return Mapped(dataset, transforms.Compose([zoo.ToRGB(), transform]))


@dataclass
class Splits:
    """A training and a test split of (PIL image, label), the class names, and what they were made from."""

    train: Dataset
    test: Dataset
    classes: list[str]
    spec: str  # how to make them again: the cache key's part


def image_folder(path: Path):
    """An ImageFolder of ``path``, or an EvalDataError that says what is wrong with the folder."""
    from torchvision.datasets import ImageFolder

    classes = sorted(d.name for d in path.iterdir() if d.is_dir()) if path.is_dir() else []
    if not classes:
        raise EvalDataError(f"{path} has no class sub-folders. Fix: put each class's images in a folder of its own "
                            f"({path}/CLASS/IMAGE.jpg), or train/ and val/ folders laid out so.")
    try:
        folder = ImageFolder(path, is_valid_file=lambda f: Path(f).suffix.lower() in IMAGE_SUFFIXES)
    except FileNotFoundError:
        raise EvalDataError(f"{path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in its class folders "
                            f"({', '.join(classes[:5])}). Fix: point --data at the folder of images.") from None
    if len(folder.classes) < 2:
        raise EvalDataError(f"{path} holds a single class ({folder.classes[0]}): classification needs at least two. "
                            "Fix: add a folder of images per class.")
    return folder


def splits(data: str, val_fraction: float = 0.2, seed: int = 0) -> Splits:
    """``data``: ``fashion-mnist``, a folder with ``train/`` and ``val/``, or one folder split by ``val_fraction``."""
    if data == "fashion-mnist":
        train = FashionMNIST(True)
        return Splits(train, FashionMNIST(False), list(train.split.classes), "fashion-mnist")
    root = Path(data).expanduser()
    if not root.is_dir():
        raise EvalDataError(f"--data {data}: no such folder. Fix: give fashion-mnist, or a folder of class folders.")
    if (root / "train").is_dir() and (root / "val").is_dir():
        train, test = image_folder(root / "train"), image_folder(root / "val")
        if train.classes != test.classes:
            raise EvalDataError(f"{root}/train and {root}/val name different classes ({train.classes[:5]} against "
                                f"{test.classes[:5]}). Fix: give both the same class folders.")
        return Splits(train, test, train.classes, f"{root.resolve()}:train+val")
    if not 0 < val_fraction < 1:
        raise EvalDataError(f"--val-fraction must be between 0 and 1, not {val_fraction}")
    folder = image_folder(root)
    order = torch.randperm(len(folder), generator=torch.Generator().manual_seed(seed)).tolist()
    cut = max(1, round(len(folder) * val_fraction))
    if cut >= len(folder):
        raise EvalDataError(f"{root} holds {len(folder)} images: too few to split. Fix: add images.")
    return Splits(Subset(folder, sorted(order[cut:])), Subset(folder, sorted(order[:cut])), folder.classes,
                  f"{root.resolve()}:split{val_fraction}:seed{seed}")


def model_transform(model):
    """timm's evaluation transform from the model's pretrained_cfg, and the resolution it gives."""
    from timm.data import create_transform, resolve_data_config

    config = resolve_data_config(model=model)
    return create_transform(**config), int(config["input_size"][-1])


def workers() -> int:
    return max(0, len(os.sched_getaffinity(0)) - 1)


@torch.no_grad()
def extract(model, dataset: Dataset, transform, device, title: str) -> torch.Tensor:
    """The model's pooled features of every image, in order, in eval mode, on ``device``'s batches."""
    loader = DataLoader(transformed(dataset, transform), batch_size=128, num_workers=workers())
    model.eval().to(device)
    out = [model(images.to(device)).float().cpu() for images, _ in tqdm(loader, desc=title, leave=False)]
    return torch.cat(out)


def cache_folder() -> Path:
    return zoo.zoo_home() / ".features"


def features(model, weights_digest: str, data: Splits, device) -> dict:
    """Train and test features of ``model`` on ``data``, with labels and the resolution; cached under
    ``$ZOO_HOME/.features`` by the sha256 of the model's weights (``zoo.checkpoint.load_with_digest``),
    the data and the transform. ``cached`` says whether they were read from the cache (no extraction timed)."""
    transform, resolution = model_transform(model)
    key = hashlib.sha256(json.dumps([weights_digest, data.spec, repr(transform)]).encode()).hexdigest()[:24]
    path = cache_folder() / f"{key}.pt"
    if path.is_file():
        return {**torch.load(path, weights_only=True), "cached": True}
    out = dict(train=extract(model, data.train, transform, device, "train features"),
               test=extract(model, data.test, transform, device, "test features"),
               train_labels=labels(data.train), test_labels=labels(data.test), resolution=resolution)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save(out, partial)
    partial.replace(path)
    return {**out, "cached": False}
