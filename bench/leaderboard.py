"""The leaderboard: every model in the local zoo ($ZOO_HOME), its kNN and linear top-1 on Fashion-MNIST,
beside raw pixels and a randomly initialised ResNet-18, in the lineage's order. Not ranked: the smoke and
quick exports (proofs that a path runs) and the claims' ablations (``bench.claims`` reports those).

Each model is measured by ``train.eval`` (features once per model at its own resolution, then the
weighted kNN and the linear probe), and described by what is known of it: its registry entry (the
authors' releases) or the ``training.json`` the engine writes beside an export (method, data, the
training curve and its minutes). ``python -m bench.leaderboard`` writes the table to BENCHMARKS.md and
``$ZOO_HOME/leaderboard.json``, which the app's "Lineage" tab shows. Nothing in it is typed in.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import timm
import torch

import zoo
import zoo.checkpoint
import zoo.data
from train import probe
from zoo.checkpoint import TRAINING
from train.eval import RESULTS, evaluate
from train.knn import knn_accuracy
from zoo.registry import ENTRIES, STAGE_NAMES, STAGES

from .claims import ablations
from .report import write_section

TITLE = "Leaderboard (Fashion-MNIST)"
LEADERBOARD = "leaderboard.json"
SKIPPED_TAGS = ("-smoke", "-quick")  # the tests' and the benchmarks' proofs that a path runs, not models


def models(home: Path) -> list[str]:
    """The checkpoint folders of the local zoo worth ranking, by name."""
    if not home.is_dir():
        return []
    skipped = ablations()  # the claims' variants: one hyper-parameter moved, reported in their own section
    return sorted(p.name for p in home.iterdir() if zoo.checkpoint.is_checkpoint(p) and not p.name.startswith(".")
                  and not any(tag in p.name for tag in SKIPPED_TAGS) and p.name not in skipped)


def describe(name: str, folder: Path) -> dict:
    """Method, stage, architecture, pre-training data and cost, from the registry or the export's training.json."""
    config = zoo.checkpoint.read_config(folder)
    out = dict(model=name, arch=config["architecture"], method="-", data="-", train_minutes=None, curve=[])
    if name in ENTRIES:
        entry = ENTRIES[name]
        out.update(method=entry.method, data=entry.dataset, source=entry.source, epochs=entry.epochs)
    if (folder / TRAINING).is_file():
        history = json.loads((folder / TRAINING).read_text())
        out.update(method=history["method"], data=history.get("dataset", "-"), source="zoo",
                   train_minutes=history.get("train_minutes"), epochs=len(history["epochs"]),
                   curve=[(row["epoch"], row.get("knn_top1")) for row in history["epochs"]])
    out["stage"] = STAGES.get(out["method"], 0)
    return out


def recorded(folder: Path, data: str) -> dict[str, dict]:
    """What ``train.eval`` recorded beside the model on ``data``, by protocol, for these very weights (their
    SHA-256, read once); a kNN only if it extracted the features itself, as its time is then the features'
    and the vote's (the linear probe always runs on the kNN's features: its time is the probe's)."""
    try:
        results = json.loads((folder / RESULTS).read_text())
    except (OSError, ValueError):
        return {}
    digest = zoo.checkpoint.sha256_of(folder / zoo.checkpoint.WEIGHTS)
    out = {}
    for protocol in ("knn", "linear"):
        result = results.get(f"{protocol}:{data}") or {}
        whole = protocol != "knn" or result.get("features_cached") is False
        if result.get("weights_sha256") == digest and whole:
            out[protocol] = result
    return out


def measure(name: str, data: str) -> dict:
    """kNN and linear top-1 of ``name`` on ``data``, each with its wall time: recorded results of the same weights
    are reused; the linear probe reuses the kNN's cached features, so its time is the probe's alone."""
    reuse = recorded(Path(name), data) if Path(name).is_dir() else {}
    out = {}
    for protocol in ("knn", "linear"):
        result = reuse.get(protocol) or evaluate(protocol, name, data)
        out[protocol], out[f"{protocol}_seconds"], out["resolution"] = result["top1"], result["seconds"], \
            result["resolution"]
    return out


def pixels(data: str = "fashion-mnist") -> dict:
    """Raw pixels (784-d) through the same two protocols: what every method must beat."""
    began = time.time()
    train, test = zoo.data.fashion_mnist(True), zoo.data.fashion_mnist(False)
    x, xt = train.data.flatten(1).float() / 255, test.data.flatten(1).float() / 255
    knn = knn_accuracy(torch.nn.functional.normalize(x, dim=1), train.targets,
                       torch.nn.functional.normalize(xt, dim=1), test.targets)
    middle = time.time()
    linear = probe.linear_probe(x, train.targets, xt, test.targets)["top1"]
    return dict(model="raw pixels (784-d)", arch="-", method="-", stage=0, data="-", knn=round(knn, 2),
                linear=round(linear, 2), knn_seconds=round(middle - began, 1),
                linear_seconds=round(time.time() - middle, 1), resolution=28)


def random_init(data: str) -> dict:
    """A ResNet-18 as the lineage's presets start it (32 px, the authors' init), untrained."""
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        model = timm.create_model("resnet18", num_classes=0, zero_init_last=False)
        folder = zoo.checkpoint.save(model, Path(tmp) / "random", card="# random init\n",
                                     data_config=dict(input_size=(3, 32, 32), mean=(0.2860,) * 3, std=(0.3530,) * 3,
                                                      crop_pct=1.0, interpolation="bilinear"),
                                     model_args=dict(zero_init_last=False))
        out = measure(str(folder), data)
    return dict(model="resnet18, random init", arch="resnet18", method="-", stage=0, data="-", **out)


def cell(value, digits=2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict]) -> str:
    lines = ["| stage | method | model | architecture | pre-training data | kNN top-1 (%) | linear top-1 (%) | "
             "px | training minutes | kNN / linear seconds |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        stage = f"{r['stage']} {STAGE_NAMES[r['stage']]}" if r["stage"] else "baseline"
        lines.append(f"| {stage} | {r['method']} | `{r['model']}` | {r['arch']} | {r['data']} | {cell(r['knn'])} | "
                     f"{cell(r['linear'])} | {r['resolution']} | {cell(r.get('train_minutes'), 1)} | "
                     f"{r['knn_seconds']:.0f} / {r['linear_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def leaderboard(home: Path, data: str = "fashion-mnist", baselines: bool = True) -> list[dict]:
    """Every ranked model of ``home`` measured, in the lineage's order (stage, then method, then kNN)."""
    rows = [{**describe(name, home / name), **measure(str(home / name), data)} for name in models(home)]
    rows.sort(key=lambda r: (r["stage"] or 9, r["method"], -r["knn"]))
    return ([pixels(data), random_init(data)] if baselines else []) + rows


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m bench.leaderboard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-write", action="store_true", help="print; leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    home = zoo.zoo_home()
    rows = leaderboard(home)
    body = (f"\n`python -m bench.leaderboard`: every model in the local zoo ({len(rows) - 2} here), measured by "
            "`python -m train.eval knn` (k=200, T=0.07) and `linear` (L-BFGS logistic regression on frozen "
            "features) on the full Fashion-MNIST splits, each at its own resolution; training minutes from the "
            "export's `training.json`.\n\n" + table(rows))
    print(body)
    if not args.no_write:
        write_section(TITLE, body)
        (home / LEADERBOARD).write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
