"""Gallery sources: the images a bank is built from, and their thumbnails.

Two kinds: the Fashion-MNIST test split (read by index, never written out as files) and a
folder of image files (searched recursively; a file's label is its parent folder's name).
An item is a small JSON-able dict: ``{"source": "fashion-mnist" | "file", "ref": index | path,
"label": str}``; ``source`` and ``ref`` are all that is needed to render its thumbnail.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from PIL import Image

import zoo.data

FASHION_MNIST = "fashion-mnist"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
THUMB = 128  # pixels, longest side
MAX_PIXELS = 50_000_000  # refuse before decoding: a 10 MB PNG can claim 20k x 20k pixels (1.2 GB decoded)


def fashion_mnist(train: bool = False):
    """The Fashion-MNIST split as torchvision's dataset (uint8 ``data`` [N, 28, 28], ``targets``, ``classes``)."""
    return zoo.data.fashion_mnist(train)


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode an image file, raising ``ValueError`` with a readable reason if it is not one.

    Decoding is forced here (PIL is lazy) so that a truncated file fails now, not mid-batch.
    Huge images are decoded at a reduced scale where the format allows (JPEG draft mode).
    """
    name = Path(path).name
    try:
        image = Image.open(path)
        too_large = image.width * image.height > MAX_PIXELS
        if not too_large:
            image.draft("RGB", (1024, 1024))  # JPEG only: decode at 1/2..1/8 scale; the models take small inputs
            image.load()
    except Image.DecompressionBombError:
        too_large = True
    except (OSError, SyntaxError, ValueError) as error:  # PIL raises all three for bad files
        reason = str(error).replace(str(path), "").strip(" :'") or type(error).__name__  # no server paths in UI text
        raise ValueError(f"{name} is not a readable image ({reason})") from None
    if too_large:
        raise ValueError(f"{name} is too large to decode safely (at most {MAX_PIXELS // 1_000_000} megapixels)")
    return image


class Source:
    """A gallery: ``len()``, ``items()`` and ``images()`` over its (PIL image, item) pairs."""

    name: str  # short tag used in the default bank folder name
    spec: dict  # what to record in the bank metadata

    def images(self, errors: list) -> Iterator[tuple[Image.Image, dict]]:
        raise NotImplementedError


class FashionMNISTSource(Source):
    """The Fashion-MNIST test split (10k images), items referenced by index."""

    name = FASHION_MNIST

    def __init__(self, limit: int = 0):
        self.dataset = fashion_mnist(train=False)
        self.count = min(limit, len(self.dataset)) if limit else len(self.dataset)
        self.spec = {"kind": FASHION_MNIST, "name": self.name, "split": "test", "count": self.count}

    def __len__(self):
        return self.count

    def images(self, errors: list) -> Iterator[tuple[Image.Image, dict]]:
        data, targets, classes = self.dataset.data, self.dataset.targets, self.dataset.classes
        for i in range(self.count):
            yield (Image.fromarray(data[i].numpy()),
                   {"source": FASHION_MNIST, "ref": i, "label": classes[int(targets[i])]})


class FolderSource(Source):
    """Every image file under a folder; unreadable files are skipped and listed in ``errors``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"gallery folder {self.root} does not exist. Fix: pass `fashion-mnist` "
                                    "or a folder of images (sub-folders name the labels).")
        self.files = sorted(p for p in self.root.rglob("*") if is_image_file(p))
        if not self.files:
            raise FileNotFoundError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {self.root}")
        self.name = self.root.name.lower()
        self.spec = {"kind": "folder", "name": self.name, "root": str(self.root), "count": len(self.files)}

    def __len__(self):
        return len(self.files)

    def images(self, errors: list) -> Iterator[tuple[Image.Image, dict]]:
        for path in self.files:
            try:
                image = open_image(path)
            except ValueError as error:
                errors.append({"path": str(path), "error": str(error)})
                continue
            label = path.parent.name if path.parent != self.root else ""
            yield image, {"source": "file", "ref": str(path), "label": label}


def open_source(data: str, limit: int = 0) -> Source:
    """``fashion-mnist`` (optionally its first ``limit`` images) or a folder of images."""
    if data == FASHION_MNIST:
        return FashionMNISTSource(limit)
    return FolderSource(data)


def thumbnail(item: dict) -> Image.Image:
    """The item's image, at most ``THUMB`` pixels a side (upscaled if tiny, so 28 x 28 stays visible)."""
    if item["source"] == FASHION_MNIST:
        image = Image.fromarray(fashion_mnist(train=False).data[int(item["ref"])].numpy())
    else:
        try:
            image = open_image(item["ref"])
        except (ValueError, FileNotFoundError):
            return Image.new("RGB", (THUMB, THUMB), "lightgrey")  # gallery file moved since the bank was built
    image = image.convert("RGB")
    scale = THUMB / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.NEAREST if scale > 1 else Image.BILINEAR)
