"""`python -m train.eval knn|linear NAME --data fashion-mnist|PATH`: how good a zoo model's frozen features are.

- ``knn``: the weighted kNN of Wu et al. 2018 (k = 200, T = 0.07 on L2-normalised features), the
  training split voting for the test split, as the training monitor.
- ``linear``: a linear classifier on the frozen features (``train.probe``), top-1 on the test split.

Features are extracted once per model, data and transform and cached (``train.eval_data``); every image
is preprocessed as the model's pretrained_cfg says, and the result states the resolution used. Results
are written as JSON beside the model (``eval.json`` in its folder, or ``$ZOO_HOME/results/NAME.json``
for a model read from the Hugging Face cache), one entry per protocol and dataset.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import zoo
import zoo.checkpoint

from . import probe
from .eval_data import EvalDataError, features, splits
from .knn import knn_accuracy

PROTOCOLS = ("knn", "linear")
RESULTS = "eval.json"  # beside a local model: one entry per protocol and dataset


def results_path(name: str, folder: Path) -> Path:
    """Where the results of ``name`` (resolved to ``folder``) go: that folder when it is a local one (in the
    zoo, or given as a path), else the zoo's results folder (never the Hugging Face cache)."""
    if folder.is_relative_to(zoo.zoo_home()) or Path(name).expanduser().is_dir():
        return folder / RESULTS
    return zoo.zoo_home() / "results" / f"{name}.json"


def record(path: Path, key: str, result: dict) -> Path:
    """Add ``result`` under ``key`` to the JSON results file ``path``, atomically."""
    results = json.loads(path.read_text()) if path.is_file() else {}
    results[key] = result
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(results, indent=1) + "\n")
    partial.replace(path)
    return path


def evaluate(protocol: str, name: str, data: str = "fashion-mnist", val_fraction: float = 0.2, seed: int = 0,
             device: torch.device | None = None, write: bool = True) -> dict:
    """Run ``protocol`` on model ``name`` and ``data``; returns (and records) its result."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    began = time.time()
    folder = zoo.resolve(name)
    model, digest = zoo.checkpoint.load_with_digest(folder)  # the digest keys the feature cache
    split = splits(data, val_fraction, seed)
    f = features(model, digest, split, device)
    if protocol == "knn":
        top1, extra = knn_accuracy(torch.nn.functional.normalize(f["train"], dim=1), f["train_labels"],
                                   torch.nn.functional.normalize(f["test"], dim=1), f["test_labels"]), dict(k=200, T=0.07)
    else:
        fitted = probe.linear_probe(f["train"], f["train_labels"], f["test"], f["test_labels"])
        top1, extra = fitted["top1"], dict(penalty=fitted["penalty"])
    result = dict(protocol=protocol, model=str(name), data=split.spec, top1=round(top1, 2), resolution=f["resolution"],
                  train_images=len(f["train"]), test_images=len(f["test"]), seconds=round(time.time() - began, 1),
                  features_cached=f["cached"], weights_sha256=digest, **extra)
    if write:
        result["written_to"] = str(record(results_path(name, folder), f"{protocol}:{data}", result))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("protocol", choices=PROTOCOLS)
    parser.add_argument("name", help="a zoo name (python -m zoo list) or a checkpoint folder")
    parser.add_argument("--data", default="fashion-mnist", help="fashion-mnist, or a folder of class folders "
                        "(with train/ and val/, or one folder split by --val-fraction)")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        result = evaluate(args.protocol, args.name, args.data, args.val_fraction, args.seed)
    except (zoo.ZooError, EvalDataError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.protocol} top-1 {result['top1']:.2f}% on {args.data} at {result['resolution']} px "
          f"({result['seconds']} s) -> {result['written_to']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
