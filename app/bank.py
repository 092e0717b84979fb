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
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import timm
import torch
from tqdm import tqdm

import zoo
from zoo import checkpoint

from . import gallery
from . import index as ann

FORMAT = 2  # 2: tied to the whole config.json, the timm version and the transform
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


def weights_sha256(folder: str | Path) -> str:
    """sha256 of a checkpoint's ``model.safetensors``: the identity a bank is tied to.

    Never cached by size and mtime: a rewrite that keeps both would pass for the old weights."""
    return checkpoint.sha256_of(Path(folder) / checkpoint.WEIGHTS)


def fingerprint(model: str, weights_digest: str | None = None, transform=None, folder: Path | None = None) -> dict:
    """What ties a bank to ``model``: the weights' hash, the whole config.json (architecture,
    model_args, preprocessing), the timm version that builds it and the transform it gets.

    ``weights_digest``, ``transform`` and ``folder`` are those of a model already loaded (see :func:`open_model`)."""
    folder = folder or zoo.resolve(model)
    config = checkpoint.read_config(folder)
    return {"model": str(model), "weights": str(folder),
            "weights_sha256": weights_digest or weights_sha256(folder),
            "config_sha256": checkpoint.sha256_of(folder / checkpoint.CONFIG), "timm": timm.__version__,
            "transform": repr(transform or zoo.transforms(folder)),
            "architecture": config["architecture"], "pretrained_cfg": config["pretrained_cfg"]}


def open_model(model: str) -> tuple[torch.nn.Module, object, dict]:
    """``model``'s network, its transform and the fingerprint of exactly what was loaded."""
    folder = zoo.resolve(model)
    net, digest = checkpoint.load_with_digest(folder)
    transform = zoo.transforms(folder)
    return net, transform, fingerprint(model, digest, transform, folder)  # resolved once: one model, one answer


# What makes a bank stale, and how to say it: (fingerprint key, what changed).
FRESHNESS = (("weights_sha256", "weights"), ("config_sha256", "config.json (architecture, model_args or "
             "preprocessing)"), ("timm", "timm version"), ("transform", "preprocessing transform"))


def check_fresh(bank: Bank, model: str | dict) -> dict:
    """Raise StaleBankError unless ``bank`` was built by ``model``'s current weights, config, timm and
    transform. ``model`` is a name or a fingerprint from :func:`open_model`; the fingerprint is returned."""
    now = fingerprint(model) if isinstance(model, str) else model
    where = bank.path or "this bank"
    data = bank.meta["gallery"].get("root", gallery.FASHION_MNIST)
    fix = (f"Fix: rebuild it with `python -m app.bank build --model {now['model']} --data {data}"
           + (f" --out {bank.path}`" if bank.path else "`"))
    changed = [what for key, what in FRESHNESS if bank.meta.get(key) != now[key]]
    if changed:
        raise StaleBankError(
            f"Stale bank {where}: {now['model']!r} ({now['weights']}) is not what built it; its "
            f"{', '.join(changed)} changed (weights sha256 then {str(bank.meta.get('weights_sha256'))[:12]}..., "
            f"now {now['weights_sha256'][:12]}...). Searching it would return wrong neighbours. " + fix + ".")
    return now


@torch.inference_mode()
def embed(model: torch.nn.Module, transform, images) -> torch.Tensor:
    """Unit features [len(images), D] of PIL images, in one forward pass."""
    batch = torch.stack([transform(image) for image in images])
    return normalise(model(batch))


def build(model: str, data: str, batch_size: int = 256, limit: int = 0, progress: bool = True,
          index: str = "auto", opened: tuple | None = None) -> Bank:
    """Embed the gallery ``data`` (``fashion-mnist`` or a folder) with ``model``; unreadable images are skipped.
    ``index``: exact, hnsw, ivf, or auto (see :func:`Bank.with_index`); ``opened``: ``model`` already loaded by
    :func:`open_model`."""
    source = gallery.open_source(data, limit)
    net, transform, meta = opened or open_model(model)
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
                created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return Bank(features, items, meta).with_index(index)


def default_path(model: str, dataset: str) -> Path:
    """``$ZOO_HOME/banks/<model>-<dataset>/``."""
    return zoo.zoo_home() / "banks" / f"{Path(model).name}-{dataset}"


def save(bank: Bank, folder: str | Path) -> Path:
    """Write ``bank`` to ``folder`` atomically (a crash leaves the old bank or the new one, never half)."""
    folder = Path(folder).expanduser()
    with checkpoint.atomic_folder(folder, owned=lambda path: (path / META).is_file() and (path / FEATURES).is_file(),
                                  what="feature bank") as staging:
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
    checkpoint.recover(folder)  # a writer killed mid-swap left the previous bank beside the path
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
                        f"{len(items)} items, format {meta.get('format')}, this version reads {FORMAT}). "
                        "Fix: rebuild it.")
    validate(features.float(), meta, folder)
    bank = Bank(features.float(), items, meta, folder)
    if bank.index_kind != "exact":
        if not (folder / ann.FILE).is_file():
            raise BankError(f"bank {folder} names a {bank.index_kind} index but has no {ann.FILE}. Fix: rebuild it.")
        settings = dict(meta["index"])
        try:
            bank.index = ann.load(folder, settings.pop("kind"), settings)
        except Exception as error:  # FAISS raises RuntimeError with a C++ trace for a damaged file
            raise BankError(f"{folder / ann.FILE} is damaged ({type(error).__name__}: "
                            f"{str(error).splitlines()[0][:120]}). Fix: rebuild the bank.") from None
        if bank.index.ntotal != len(items) or bank.index.d != features.shape[1]:
            raise BankError(f"{folder / ann.FILE} indexes {bank.index.ntotal} x {bank.index.d} vectors, the bank "
                            f"holds {len(items)} x {features.shape[1]}. Fix: rebuild the bank.")
    if model is not None:
        check_fresh(bank, model)
    return bank


def validate(features: torch.Tensor, meta: dict, folder: Path) -> None:
    """Refuse damaged features now, not at search time: a NaN row would rank first for every query,
    and a row of the wrong width would fail in the matmul with an error that blames the image."""
    if features.shape[1] != meta.get("dim"):
        raise BankError(f"{folder / FEATURES} holds {features.shape[1]}-d features, its meta.json says "
                        f"{meta.get('dim')}-d. Fix: rebuild the bank.")
    bad = (~torch.isfinite(features).all(dim=1)) | ((features.norm(dim=1) - 1).abs() > 1e-3)
    if bad.any():
        rows = bad.nonzero().flatten().tolist()
        raise BankError(f"{folder / FEATURES} has {len(rows)} rows that are not finite unit vectors (rows "
                        f"{', '.join(map(str, rows[:5]))}{', ...' if len(rows) > 5 else ''}). Fix: rebuild the bank.")


def discover() -> list[Path]:
    """Every bank folder under ``$ZOO_HOME/banks``."""
    root = zoo.zoo_home() / "banks"
    if not root.is_dir():
        return []
    # dot-folders are a writer's staging or swap folders, never a bank to serve
    return sorted(p for p in root.iterdir() if not p.name.startswith(".") and (p / META).is_file())


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
