"""`python -m bench.gpu`: the checks only a GPU can make, in one run (the project's tests run on CPUs).

1. Smoke: every method's small presets trained on the GPU for one epoch, resumed from that checkpoint for a
   second, exported and loaded back with ``zoo.load``. This runs what the CPU never does: bf16 autocast,
   pinned memory, the CUDA kernels of every view, head, loss and memory, and a checkpoint written from one
   device and read onto another. A row per preset: its losses, whether they are finite, and whether the
   exported model, loaded back, gives finite, varied features with the kNN its card reports.
2. Throughput of the `fmnist` presets on the GPU: `bench.throughput`'s rounds, on the device.
3. Throughput of the `paper` recipes on one GPU: the method's step on synthetic uint8 crops of the recipe's
   sizes (decoding and cropping left out), at a per-GPU batch, and the GPU-hours that rate puts on the recipe.
4. `bench.vs_lightly --epochs 4` on the GPU; parts ``compiled`` and ``graphed``, only when named: the same with
   our networks compiled (``--compile``: inductor's fused kernels where the eager step is bound by launching
   them; ``--compile reduce-overhead``: those kernels replayed as CUDA graphs, one launch per network and pass).
5. `bench.views`: making the views, ours against kornia's transforms, timed and counted on the GPU.
6. `bench.step_ops`: the operators, kernels and host syncs of one training step, ours against lightly's, as
   CUDA dispatches them.
7. `bench.layout`: each method's step channels-last against NCHW on the GPU, which checks the layout the engine
   picks (NCHW for MoCo's split BatchNorms); `bench.compile_gain` (part ``compile-gain``): each step eager
   against compiled and replayed as CUDA graphs.
8. Only when asked (``--parts long``): the lineage's best method trained longer than its CPU preset
   (``bench.knn_fmnist --methods instdisc --epochs 40``, about six minutes on an H200), towards the stage-2
   goal of 84% kNN; its record lands in ``bench/records/``, to be copied back with the report.

Each part writes its section of BENCHMARKS.md as soon as it ends, so a run cut short keeps what it finished;
a part that fails is reported with its error, and the next one runs. ``--quick`` shrinks every part to a few
steps and prints only: the rehearsal of the script on a CPU.
"""
from __future__ import annotations

import argparse
import csv
import math
import statistics
import tempfile
import time
import traceback
from pathlib import Path

import torch

import zoo
import zoo.card
from train import data as datasets
from train.augment import Preprocess
from train.engine import fit, on_device
from train.knn import knn_monitor
from train.methods import METHODS

from . import compile_gain, knn_fmnist, layout, step_ops, throughput, views, vs_lightly
from .bare import BARE, engine_step
from .presets import comma_names
from .report import write_section

IMAGENET_IMAGES = 1_281_167
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
PER_GPU_BATCH = 256  # the most a paper step takes on one GPU here; halved on running out of memory
IN_MEMORY = {"fashion-mnist": 60_000, "cifar10": 50_000}  # training images of the datasets held whole in memory
KNN_TOLERANCE = 1.0  # points between the card's kNN (bf16 features at export) and the loaded model's
LONG = ("instdisc", 40)  # the lineage's best on the CPU, and the epochs an H200 trains it in about six minutes


def small_presets(name: str) -> list[str]:
    return [preset for preset in METHODS[name].PRESETS if preset.startswith("smoke")]


def card_knn(folder: Path) -> float:
    """The kNN top-1 that the exported model card reports in its model-index."""
    from huggingface_hub import ModelCard

    for result in ModelCard.load(folder / "README.md").data.eval_results or []:
        if result.metric_name == zoo.card.KNN_METRIC:
            return float(result.metric_value)
    raise ValueError(f"{folder / 'README.md'} reports no {zoo.card.KNN_METRIC}")


def failure(error: Exception) -> str:
    """A table cell naming what failed: its type and the first line of its message."""
    first = str(error).splitlines()[0][:200] if str(error) else ""
    return f"**failed**: {type(error).__name__}: {first}"


def smoke(name: str, preset: str, root: Path, device: torch.device, epochs: int) -> dict:
    """Train ``epochs - 1`` epochs, then resume for the last one and export; load the export back and check it."""
    cfg = METHODS[name].PRESETS[preset].override(epochs=epochs)
    out = root / f"{name}-{preset}"
    began = time.perf_counter()
    fit(name, preset, cfg.override(epochs=epochs - 1), out, export=False)
    folder = fit(name, preset, cfg, out, resume=True, name=f"gpu-{name}-{preset}")
    seconds = time.perf_counter() - began
    rows = list(csv.DictReader((out / "metrics.csv").read_text().splitlines()))
    losses = [float(row["loss"]) for row in rows]
    data = datasets.as_fed(datasets.load(cfg.dataset, cfg.image_size, cfg.subset, cfg.seed), cfg.normalize)
    preprocess = Preprocess(cfg.image_size, data.mean, data.std, data.crop_pct).to(device)
    model = zoo.load(str(folder)).to(device)
    with torch.no_grad():
        features = model(preprocess(torch.stack([data.test[i][0] for i in range(64)]).to(device))).float()
    knn, reported = knn_monitor(model, data, preprocess, device), card_knn(folder)
    problems = [f"epochs {[row['epoch'] for row in rows]}, not 1-{epochs}"] * (len(rows) != epochs)
    problems += ["a loss is not finite"] * (not all(map(math.isfinite, losses)))
    problems += ["features not finite"] * (not torch.isfinite(features).all().item())
    problems += ["features collapsed (no spread over 64 images)"] * (features.std(0).max().item() < 1e-6)
    problems += [f"kNN of the loaded export {knn:.2f} against the card's {reported:.2f}"] * (
        abs(knn - reported) > KNN_TOLERANCE)
    return dict(losses=losses, knn=knn, reported=reported, seconds=seconds, features=tuple(features.shape),
                problems=problems)


def smoke_section(device: torch.device, epochs: int) -> str:
    rows = ["| method | preset | loss per epoch | kNN: loaded export / card | features | seconds | result |",
            "|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as root:
        for name in METHODS:
            for preset in small_presets(name):
                try:
                    r = smoke(name, preset, Path(root), device, epochs)
                except Exception as error:  # the report names it; the next method still runs
                    traceback.print_exc()
                    rows.append(f"| {name} | {preset} | - | - | - | - | {failure(error)} |")
                    continue
                result = "ok" if not r["problems"] else "**failed**: " + "; ".join(r["problems"])
                rows.append(f"| {name} | {preset} | {' / '.join(f'{x:.4g}' for x in r['losses'])} | "
                            f"{r['knn']:.2f} / {r['reported']:.2f} | {r['features']} | {r['seconds']:.1f} | {result} |")
                print(rows[-1], flush=True)
    return f"""
`python -m bench.gpu`, part 1: each method's small presets trained on the GPU ({epochs - 1} epoch, then resumed from
its checkpoint for epoch {epochs}), exported to the zoo's format and loaded back with `zoo.load`: bf16 autocast,
pinned memory and the CUDA kernels of every view, head, loss and memory, which the CPU tests never run. A
preset passes when every epoch ran, its losses are finite, the loaded export's features on 64 test images are
finite and varied, and its kNN (measured again from the loaded files) is within {KNN_TOLERANCE} point of the
card's (bf16 features either way; the small presets train on a 512-image subset, so the kNN itself means little).

{chr(10).join(rows)}
"""


def fmnist_throughput_section(device: torch.device, repeats: int, names: list[str]) -> str:
    data = datasets.load("fashion-mnist", BARE.image_size, BARE.batch_size)
    seconds = throughput.rounds(throughput.steps(names, data, BARE.batch_size, device), repeats)
    return f"""
`python -m bench.gpu`, part 2: `bench.throughput` on the GPU. One engine step at batch {BARE.batch_size} on the same
Fashion-MNIST images (bf16 autocast), {repeats} rounds after a warm-up, the order rotating each round, each step
timed to the device's end; median [quartiles]. Columns as in "Training throughput": at 32 px a ResNet-18 step is
far too small to fill this GPU, so these rates measure kernel launches more than arithmetic.

{throughput.table(seconds, names, BARE.batch_size)}
"""


def epoch_images(cfg) -> int:
    """Training images in one epoch of the recipe's dataset: an in-memory one's, else ImageNet's."""
    return IN_MEMORY.get(cfg.dataset, IMAGENET_IMAGES)


def synthetic_batch(method, cfg, batch: int, device: torch.device):
    """Random uint8 images as the loader would hand them: whole ones for in-memory datasets (the views crop on
    the device), else one tensor per crop, as the CPU workers cut them from decoded files."""
    if cfg.dataset in IN_MEMORY:
        return torch.randint(0, 256, (batch, 3, cfg.image_size, cfg.image_size), dtype=torch.uint8, device=device)
    return [torch.randint(0, 256, (batch, 3, crop.size, crop.size), dtype=torch.uint8, device=device)
            for crop in method.crops]


def paper_rate(name: str, device: torch.device, batch: int, warmup: int, steps: int) -> tuple[int, list[float]]:
    """Images per second of each timed step of ``name``'s paper recipe at a per-GPU ``batch`` (halved until it
    fits in memory); returns the batch used and the rates."""
    cfg = METHODS[name].PRESETS["paper"]
    batch = min(batch, cfg.batch_size)
    while True:
        try:
            return batch, timed_steps(name, cfg.override(batch_size=batch), device, warmup, steps)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            if batch <= 8:
                raise
            batch //= 2


def timed_steps(name: str, cfg, device: torch.device, warmup: int, steps: int) -> list[float]:
    torch.manual_seed(0)
    method = on_device(METHODS[name].build(cfg, epoch_images(cfg), *IMAGENET_STATS), device)
    batch = cfg.batch_size
    step = throughput.synced(engine_step(method, cfg, synthetic_batch(method, cfg, batch, device),
                                         torch.arange(batch, device=device), device), device)
    return [batch / seconds for seconds in throughput.step_seconds(step, steps, warmup)]


def paper_throughput_section(device: torch.device, warmup: int, steps: int, batch: int = PER_GPU_BATCH) -> str:
    rows = ["| method (`paper` preset) | backbone, px | per-GPU batch | images/s, median [quartiles] | "
            "one epoch of its data, GPU-hours | the recipe's epochs, GPU-hours |", "|---|---|---|---|---|---|"]
    for name in METHODS:
        cfg = METHODS[name].PRESETS["paper"]
        try:
            used, rates = paper_rate(name, device, batch, warmup, steps)
        except Exception as error:
            traceback.print_exc()
            rows.append(f"| {name} | {cfg.arch}, {cfg.image_size} | - | {failure(error)} | - | - |")
            continue
        epoch = epoch_images(cfg) / statistics.median(rates) / 3600
        rows.append(f"| {name} | {cfg.arch}, {cfg.image_size} | {used} | {throughput.spread(rates)} | "
                    f"{epoch:.3g} | {epoch * cfg.epochs:.3g} ({cfg.epochs} epochs) |")
        print(rows[-1], flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return f"""
`python -m bench.gpu`, part 3: each method's `paper` recipe (its backbone, views, heads, loss, memory and
optimiser) stepped on one GPU in bf16 autocast, on random uint8 crops of the recipe's sizes already on the GPU:
JPEG decoding and the CPU's random crops are left out, so this is the ceiling the data pipeline must feed.
The batch is per GPU ({batch}, or the recipe's if smaller, halved only on running out of memory);
{steps} steps timed after {warmup} warm-up steps. GPU-hours assume the rate holds per GPU when the recipe's
global batch is spread over several (ImageNet: {IMAGENET_IMAGES:,} images an epoch; CIFAR-10: 50,000).

{chr(10).join(rows)}
"""


def long_arguments(quick: bool) -> list[str]:
    """``bench.knn_fmnist``'s arguments for the long part (``--quick``: its own one-epoch rehearsal)."""
    method, epochs = LONG
    return ["--methods", method, *(["--quick"] if quick else ["--skip-trained", "--epochs", str(epochs)])]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="views,ops,layout,smoke,lightly,paper,fmnist",
                        help="comma-separated, run in the order given: views, ops, layout, smoke, lightly, compiled, "
                             "graphed, compile-gain, paper, fmnist, long (compiled, graphed, compile-gain and long "
                             "only when named)")
    parser.add_argument("--quick", action="store_true", help="a few steps of each part, printed, nothing written")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.quick:
        parser.error("no GPU here: this benchmark is the GPU's (--quick rehearses it on a CPU)")
    names = list(METHODS)
    lightly_length = ["--quick"] if args.quick else ["--epochs", "4"]
    rounds_length = ["--repeats", "2", "--no-write"] if args.quick else []
    parts = {
        "smoke": ("On a GPU: every method trained, resumed, exported and loaded",
                  lambda: smoke_section(device, epochs=2)),
        "fmnist": ("On a GPU: training throughput of the fmnist presets",
                   lambda: fmnist_throughput_section(device, 2 if args.quick else 15, names)),
        "lightly": (None, lambda: vs_lightly.main(lightly_length)),
        "compiled": (None, lambda: vs_lightly.main(["--compile", *lightly_length])),
        "graphed": (None, lambda: vs_lightly.main(["--compile", "reduce-overhead", *lightly_length])),
        "views": (None, lambda: views.main(rounds_length)),
        "ops": (None, lambda: step_ops.main(["--no-write"] if args.quick else [])),
        "layout": (None, lambda: layout.main(rounds_length)),
        "compile-gain": (None, lambda: compile_gain.main(rounds_length)),
        "long": (None, lambda: knn_fmnist.main(long_arguments(args.quick))),
        "paper": ("On a GPU: throughput of the paper recipes",
                  lambda: paper_throughput_section(device, *((1, 1, 8) if args.quick else (3, 10, PER_GPU_BATCH)))),
    }
    try:
        chosen = comma_names("part", parts)(args.parts)
    except argparse.ArgumentTypeError as error:  # the parts' runs need the parsed arguments: checked after them
        parser.error(f"--parts: {error}")
    failed = []
    for part in chosen:
        title, run = parts[part]
        began = time.perf_counter()
        print(f"== {part}", flush=True)
        try:
            body = run()
        except (Exception, SystemExit):  # SystemExit: a bench's own argument error, e.g. lightly missing
            traceback.print_exc()
            failed.append(part)
            continue
        print(body if title else "", f"== {part}: {time.perf_counter() - began:.0f} s", flush=True)
        if title and not args.quick:
            write_section(title, body)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
