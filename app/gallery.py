"""Gallery sources: the images a bank is built from, and their thumbnails.

Two kinds: the Fashion-MNIST test split (read by index, never written out as files) and a
folder of image files (searched recursively; a file's label is its parent folder's name).
An item is a small JSON-able dict: ``{"source": "fashion-mnist" | "file", "ref": index | path,
"label": str}``; ``source`` and ``ref`` are all that is needed to render its thumbnail.
"""
from __future__ import annotations

import ctypes
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import ExifTags, Image, ImageOps

import zoo.data

FASHION_MNIST = "fashion-mnist"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
THUMB = 128  # pixels, longest side
MAX_SIDE = 1024  # images are shrunk to this as they are decoded: the models take small inputs
# Decoded pixels allowed per image, checked before decoding (after JPEG's reduced-scale draft, so JPEG
# photos pass up to PIL's own limit of 179 MP). 50 MP holds an 8K frame (33 MP) or an A4 page scanned
# at 600 dpi (35 MP). Decoding holds 4 to 6 bytes a pixel (RGBA: 4, and a 1-byte band being reduced;
# 16-bit grey: 2, and its 4-byte copy), so an image at the cap takes up to 300 MB and about 2 s of CPU:
# what a 200 kB PNG can ask for.
MAX_PIXELS = 50_000_000
TRIM_ABOVE = 4_000_000  # decoded pixels after which freed memory is handed back to the system


class PixelBudget:
    """At most ``limit`` pixels being decoded at once, across threads.

    Decoding is where a small file becomes a large buffer: without a bound, a batch of bombs
    decoded by concurrent requests multiplies the peak memory by the batch size.
    """

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, pixels: int):
        """Wait until ``pixels`` fit in the budget, and keep them for the duration of the block."""
        pixels = min(pixels, self.limit)  # an image larger than the budget waits until it has it all
        with self._changed:
            self._changed.wait_for(lambda: self.used + pixels <= self.limit)
            self.used += pixels
        try:
            yield
        finally:
            with self._changed:
                self.used -= pixels
                self._changed.notify_all()


# One image at the cap plus ordinary ones beside it: at most ~400 MB of decode buffers at any time
# (a burst of bombs is decoded one after another, on one core).
DECODE_BUDGET = PixelBudget(64_000_000)


def _libc_malloc_trim():
    """glibc's ``malloc_trim``, or None elsewhere: glibc keeps freed memory of thread arenas mapped
    (a burst of large decodes then stays in RSS); trimming returns it to the system."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return None


_malloc_trim = _libc_malloc_trim()


def fashion_mnist(train: bool = False):
    """The Fashion-MNIST split as torchvision's dataset (uint8 ``data`` [N, 28, 28], ``targets``, ``classes``)."""
    return zoo.data.fashion_mnist(train)


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def open_image(path: str | os.PathLike) -> Image.Image:
    """The image file as an upright RGB image at most ``MAX_SIDE`` a side; ``ValueError`` with a readable
    reason if it is not an image or would decode to more than ``MAX_PIXELS``.

    Decoding is forced here (PIL is lazy) so that a truncated file fails now, not mid-batch. The
    image is shrunk while it is decoded (JPEG at a reduced scale, other formats by an integer
    factor right after), under ``DECODE_BUDGET``, so nothing full-size outlives this call.
    """
    with _reasons(path):
        image = _drafted(path)
    pixels = image.width * image.height
    if pixels > MAX_PIXELS:
        image.close()
        raise ValueError(_too_large(path, f"{image.width} x {image.height} pixels"))
    with _reasons(path), DECODE_BUDGET.hold(pixels):
        image.load()
        exif = image.getexif()  # after load: PNG may keep it after the pixels, TIFF reads it from the file
        image = _reduced(image)  # the full-size image is freed here, before the budget is
        if pixels > TRIM_ABOVE and _malloc_trim:
            _malloc_trim(0)  # before the next decode can start: else both would count in the peak
    image.thumbnail((MAX_SIDE, MAX_SIDE))
    return _upright(image, exif).convert("RGB")


def claimed_pixels(path: str | os.PathLike) -> int:
    """The pixels ``open_image`` would decode (its header's size, after JPEG's draft), 0 if it is no image:
    what a batch's decoding will cost, known before any of it is spent."""
    try:
        with _drafted(path) as image:
            return image.width * image.height
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return 0  # open_image gives the reason


def _drafted(path: str | os.PathLike) -> Image.Image:
    """The file opened lazily (its header read, nothing decoded), JPEGs set to decode at 1/2..1/8 scale:
    its size is then what decoding will cost, for :func:`open_image` and :func:`claimed_pixels` alike."""
    image = Image.open(path)
    image.draft("RGB", (MAX_SIDE, MAX_SIDE))
    return image


def _too_large(path: str | os.PathLike, size: str) -> str:
    return (f"{Path(path).name} is too large to decode safely ({size}; at most {MAX_PIXELS // 1_000_000} "
            "megapixels). Fix: scale it down, or save it as JPEG")


@contextmanager
def _reasons(path: str | os.PathLike):
    """PIL's errors for a bad file as ``ValueError`` with a reason fit for the UI (no server paths)."""
    try:
        yield
    except Image.DecompressionBombError:  # PIL's own limit, met before ours by images over 179 MP
        raise ValueError(_too_large(path, f"over {round(2 * Image.MAX_IMAGE_PIXELS / 1e6)} megapixels")) from None
    except (OSError, SyntaxError, ValueError) as error:  # PIL raises all three for bad files
        reason = str(error).replace(str(path), "").strip(" :'") or type(error).__name__
        raise ValueError(f"{Path(path).name} is not a readable image ({reason})") from None


def _reduced(image: Image.Image) -> Image.Image:
    """The decoded ``image`` shrunk by an integer factor to between 1 and 2 x ``MAX_SIDE`` a side,
    in an 8-bit mode that ``thumbnail`` and ``convert("RGB")`` handle correctly.

    ``reduce`` (box averages) is cheap and needs no full-size copy in L, RGB, I and F; RGBA and
    LA would be copied whole to premultiply alpha, so their colour bands are reduced one by one
    (the alpha is dropped anyway, as the models take RGB).
    """
    if image.mode.startswith("I;16"):
        image = image.convert("I")  # 16-bit: reduce and thumbnail work on 32-bit integers
    elif image.mode in ("1", "P", "PA"):
        image = image.convert("L" if image.mode == "1" else "RGB")  # averaging bits or palette indices is wrong
    factor = max(image.size) // MAX_SIDE
    if factor >= 2 and image.mode in ("LA", "RGBA"):
        colour = image.mode[:-1]
        image = Image.merge(colour, [image.getchannel(band).reduce(factor) for band in colour])
    elif factor >= 2:
        image = image.reduce(factor)
    if image.mode == "I":  # 16-bit data in practice (PIL's I;16, older PILs' 16-bit PNGs); more is white
        return _eight_bit(image, 0, 65535)  # i.e. divided by 257
    if image.mode == "F":
        return _eight_bit(image, *_float_range(image))
    return image


def _float_range(image: Image.Image) -> tuple[float, float]:
    """The values that map to black and white: 0 and 1 when all finite values lie in [0, 1] (the usual
    convention for float images, and a dark image stays dark), else the image's own range."""
    values = np.asarray(image)
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if low >= 0 and high <= 1:
        return 0.0, 1.0
    return low, high if high > low else low + 1


def _eight_bit(image: Image.Image, black: float, white: float) -> Image.Image:
    """Grey levels of a 32-bit (I or F) image mapped linearly from [black, white] to 0..255 (NaN is black).

    PIL's own conversion clips instead: 16-bit values all come out white, [0, 1] floats black.
    """
    values = (np.asarray(image, dtype=np.float64) - black) * (255 / (white - black)) + 0.5
    return Image.fromarray(np.clip(np.nan_to_num(values, nan=0.0), 0, 255).astype(np.uint8))


def _upright(image: Image.Image, exif: Image.Exif) -> Image.Image:
    """``image`` turned as its EXIF orientation says (cameras store pixels as the sensor saw them).

    The shrunk image is turned, not the original; it is given the original's EXIF for that, as
    ``Image.merge`` starts without any. (PIL turns TIFFs itself as it loads them, and drops their tag.)
    """
    if exif.get(ExifTags.Base.Orientation, 1) == 1:
        return image
    image.info["exif"] = exif.tobytes()
    return ImageOps.exif_transpose(image)


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
