"""Feature banks: a gallery embedded by one zoo model, saved to disk and searched by exact cosine top-k.

A bank folder holds ``features.safetensors`` (float32 [N, D], rows L2-normalised),
``items.json`` (one ``{"source", "ref", "label"}`` per row, see :mod:`app.gallery`) and
``meta.json`` (the model name, the sha256 of its weights file and its preprocessing, the
gallery, any images that were skipped, and the search index). Banks above a few hundred
thousand items also hold ``index.faiss``, an approximate index (see :mod:`app.index`). A bank
is only searched with the very weights that built it: :func:`load` with ``model=`` refuses a
stale bank.

    python -m app.bank build --model instdisc-resnet18-fmnist --data fashion-mnist
    python -m app.bank search --bank ~/.cache/contrastive-zoo/banks/instdisc-resnet18-fmnist-fashion-mnist --image shoe.png
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import torch
from tqdm import tqdm

import zoo
from zoo import checkpoint

from . import gallery
from . import index as ann

FORMAT = 1
FEATURES, ITEMS, META = "features.safetensors", "items.json", "meta.json"


class BankError(zoo.ZooError):
    """A bank that cannot be used; the message says why and how to fix it."""


class StaleBankError(BankError):
    """The bank was built by other weights (or preprocessing) than the model it would be searched with."""


@dataclass
class Bank:
    features: torch.Tensor  # [N, D] float32, unit rows
    items: list[dict]
    meta: dict
    path: Path | None = None
    index: object | None = None  # a FAISS index, or None for exact search

    @property
    def index_kind(self) -> str:
        return self.meta.get("index", {}).get("kind", "exact")

    @property
    def model(self) -> str:
        return self.meta["model"]

    @property
    def dataset(self) -> str:
        return self.meta["gallery"]["name"]

    def search(self, queries: torch.Tensor, k: int) -> list[list[dict]]:
        """The ``k`` nearest items of each query (rows of unit features): ``{"index", "score", "item"}`` dicts."""
        if queries.dim() == 1:
            queries = queries[None]
        scores, indices = ann.search(self.index, queries, k) if self.index is not None else \
            top_k(self.features, queries, k)
        return [[{"index": i, "score": s, "item": self.items[i]} for s, i in zip(row_s, row_i) if i >= 0]
                for row_s, row_i in zip(scores.tolist(), indices.tolist())]

    def with_index(self, kind: str = "auto", **params) -> "Bank":
        """Build the search index ``kind`` (auto: exact below ann.APPROXIMATE_FROM items, else HNSW)."""
        kind = ann.choose(len(self.items), kind)
        self.index, params = (None, {}) if kind == "exact" else ann.build(self.features, kind, **params)
        self.meta["index"] = {"kind": kind, **params}
        return self


def top_k(features: torch.Tensor, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact cosine top-k: one matmul of unit vectors, then ``torch.topk`` (scores descending)."""
    if queries.dim() == 1:
        queries = queries[None]
    scores = queries.to(features.dtype) @ features.T
    return scores.topk(min(k, features.shape[0]), dim=1)


def normalise(features: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(features.float(), dim=1)


@functools.lru_cache(maxsize=32)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(folder: str | Path) -> str:
    """sha256 of a checkpoint's ``model.safetensors``: the identity a bank is tied to (cached per file version)."""
    path = Path(folder) / checkpoint.WEIGHTS
    stat = path.stat()
    return _sha256(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


def fingerprint(model: str) -> dict:
    """What ties a bank to ``model``: its checkpoint folder, weights hash and preprocessing."""
    folder = zoo.resolve(model)
    config = checkpoint.read_config(folder)
    return {"model": str(model), "weights": str(folder), "weights_sha256": weights_sha256(folder),
            "architecture": config["architecture"], "pretrained_cfg": config["pretrained_cfg"]}


def check_fresh(bank: Bank, model: str) -> dict:
    """Raise StaleBankError unless ``bank`` was built by ``model``'s current weights and preprocessing."""
    now = fingerprint(model)
    where = bank.path or "this bank"
    data = bank.meta["gallery"].get("root", gallery.FASHION_MNIST)
    fix = (f"Fix: rebuild it with `python -m app.bank build --model {model} --data {data}"
           + (f" --out {bank.path}`" if bank.path else "`"))
    if bank.meta.get("weights_sha256") != now["weights_sha256"]:
        raise StaleBankError(
            f"Stale bank {where}: it was built by {bank.meta.get('model')!r} with weights sha256 "
            f"{str(bank.meta.get('weights_sha256'))[:12]}..., but {model!r} now has weights "
            f"{now['weights_sha256'][:12]}... "
            f"({now['weights']}). Searching it would return wrong neighbours. " + fix + ".")
    if bank.meta.get("pretrained_cfg") != now["pretrained_cfg"]:
        raise StaleBankError(f"Stale bank {where}: {model!r}'s preprocessing (pretrained_cfg) changed since it was "
                             "built. " + fix + ".")
    return now


@torch.inference_mode()
def embed(model: torch.nn.Module, transform, images) -> torch.Tensor:
    """Unit features [len(images), D] of PIL images, in one forward pass."""
    batch = torch.stack([transform(image) for image in images])
    return normalise(model(batch))


def build(model: str, data: str, batch_size: int = 256, limit: int = 0, progress: bool = True,
          index: str = "auto") -> Bank:
    """Embed the gallery ``data`` (``fashion-mnist`` or a folder) with ``model``; unreadable images are skipped.
    ``index``: exact, hnsw, ivf, or auto (see :func:`Bank.with_index`)."""
    source = gallery.open_source(data, limit)
    meta = fingerprint(model)
    net, transform = zoo.load(meta["weights"]), zoo.transforms(meta["weights"])
    chunks, items, skipped, batch = [], [], [], []
    bar = tqdm(total=len(source), unit="img", desc=f"embedding {source.name} with {Path(model).name}",
               disable=not progress)

    def flush():
        chunks.append(embed(net, transform, [image for image, _ in batch]))
        items.extend(item for _, item in batch)
        bar.update(len(batch))
        batch.clear()

    counted = 0  # skipped files advance the bar too
    for image, item in source.images(skipped):
        batch.append((image, item))
        if len(batch) == batch_size:
            flush()
        bar.update(len(skipped) - counted)
        counted = len(skipped)
    if batch:
        flush()
    bar.update(len(skipped) - counted)
    bar.close()
    for bad in skipped:
        print(f"skipped {bad['path']}: {bad['error']}", file=sys.stderr)
    if not items:
        raise BankError(f"no readable image in {data}: all {len(skipped)} failed to decode")
    features = torch.cat(chunks)
    meta.update(format=FORMAT, gallery=source.spec, count=len(items), dim=features.shape[1], skipped=skipped,
                transform=repr(transform), created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return Bank(features, items, meta).with_index(index)


def default_path(model: str, dataset: str) -> Path:
    """``$ZOO_HOME/banks/<model>-<dataset>/``."""
    return zoo.zoo_home() / "banks" / f"{Path(model).name}-{dataset}"


def save(bank: Bank, folder: str | Path) -> Path:
    """Write ``bank`` to ``folder`` atomically (a crash leaves the old bank or the new one, never half)."""
    folder = Path(folder).expanduser()
    with checkpoint.atomic_folder(folder) as staging:
        safetensors.torch.save_file({"features": bank.features.contiguous()}, staging / FEATURES,
                                    metadata={"model": bank.model, "weights_sha256": bank.meta["weights_sha256"]})
        (staging / ITEMS).write_text(json.dumps(bank.items))
        (staging / META).write_text(json.dumps(bank.meta, indent=1))
        if bank.index is not None:
            ann.save(bank.index, staging)
    bank.path = folder
    return folder


def load(folder: str | Path, model: str | None = None) -> Bank:
    """Read a bank; with ``model``, refuse it (StaleBankError) unless that model's current weights built it."""
    folder = Path(folder).expanduser()
    missing = [name for name in (FEATURES, ITEMS, META) if not (folder / name).is_file()]
    if missing:
        raise BankError(f"{folder} is not a feature bank (missing {', '.join(missing)}). "
                        "Fix: build one with `python -m app.bank build --model NAME --data fashion-mnist`.")
    try:
        meta = json.loads((folder / META).read_text())
        items = json.loads((folder / ITEMS).read_text())
        features = safetensors.torch.load_file(folder / FEATURES)["features"]
    except Exception as error:  # truncated json, bad safetensors header, missing key: all mean "rebuild"
        raise BankError(f"bank {folder} is unreadable ({type(error).__name__}: {error}). Fix: rebuild it.") from None
    if meta.get("format") != FORMAT or features.dim() != 2 or len(items) != features.shape[0]:
        raise BankError(f"bank {folder} is inconsistent or of another format ({features.shape[0]} feature rows, "
                        f"{len(items)} items, format {meta.get('format')}). Fix: rebuild it.")
    bank = Bank(features.float(), items, meta, folder)
    if bank.index_kind != "exact":
        if not (folder / ann.FILE).is_file():
            raise BankError(f"bank {folder} names a {bank.index_kind} index but has no {ann.FILE}. Fix: rebuild it.")
        settings = dict(meta["index"])
        bank.index = ann.load(folder, settings.pop("kind"), settings)
    if model is not None:
        check_fresh(bank, model)
    return bank


def discover() -> list[Path]:
    """Every bank folder under ``$ZOO_HOME/banks``."""
    root = zoo.zoo_home() / "banks"
    return sorted(p for p in root.iterdir() if (p / META).is_file()) if root.is_dir() else []


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.bank", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("build", help="embed a gallery and write a bank")
    make.add_argument("--model", required=True, help="zoo model name or checkpoint folder")
    make.add_argument("--data", default=gallery.FASHION_MNIST, help="fashion-mnist (test split) or a folder of images")
    make.add_argument("--out", type=Path, help="bank folder (default $ZOO_HOME/banks/<model>-<dataset>)")
    make.add_argument("--batch-size", type=int, default=256)
    make.add_argument("--limit", type=int, default=0, help="fashion-mnist: embed only the first N images")
    make.add_argument("--index", default="auto", choices=("auto", *ann.KINDS),
                      help=f"search index (auto: exact below {ann.APPROXIMATE_FROM:,} items, else FAISS HNSW)")
    find = commands.add_parser("search", help="the nearest gallery items of an image")
    find.add_argument("--bank", type=Path, required=True)
    find.add_argument("--image", required=True)
    find.add_argument("-k", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            bank = build(args.model, args.data, args.batch_size, args.limit, index=args.index)
            out = save(bank, args.out or default_path(args.model, bank.dataset))
            print(f"wrote bank of {len(bank.items)} items ({len(bank.meta['skipped'])} skipped) to {out}")
        else:
            from .search import Searcher
            searcher = Searcher(load(args.bank))
            for hit in searcher.search(gallery.open_image(args.image), args.k):
                print(f"{hit['score']:.4f}  {hit['item']['label'] or '-'}  {hit['item']['ref']}")
    except (zoo.ZooError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
