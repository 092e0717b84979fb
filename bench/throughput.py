"""Training throughput: each method's engine step against the bare backbone's, on the same images.

One round times the bare step (the `fmnist` presets' ResNet-18 forward + backward + SGD on the batch already
resized to 32 px and normalised) and one engine step of every method's `fmnist` preset (its augmentation on
the device, its views, heads, loss, memory and hooks, and its optimiser) on the same batch of Fashion-MNIST
images; the order rotates from round to round, and ``--repeats`` rounds are timed after one untimed warm-up
each, so that every step sees the same machine load. A method's cost is its time over the bare step's in the
same round, reported as the median with its quartiles: a ratio below 1 would be noise (every method does
at least the bare step's work), and is flagged as such.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from train import data as datasets
from train.engine import training_loader, training_set
from train.methods import METHODS

from .bare import BARE, bare_step, engine_step
from .report import write_section

CPU = torch.device("cpu")


def first_batch(name: str, data: datasets.Data, batch: int):
    """``name``'s `fmnist` method, its config at ``batch`` and its first batch (images, index) of ``data``, through
    its own training set and an unshuffled loader: the first ``batch`` images, as the bare step's."""
    torch.manual_seed(0)
    cfg = METHODS[name].PRESETS["fmnist"].override(batch_size=batch)
    method = METHODS[name].build(cfg, len(data.train), data.mean, data.std)
    loader, sampler = training_loader(training_set(data, method), cfg, 0, 1, CPU)
    sampler.shuffle = False
    images, index = next(iter(loader))
    return method, cfg, images, index


def steps(names: list[str], data: datasets.Data, batch: int = BARE.batch_size) -> dict:
    """The bare step, then one engine step of each method, all on the first ``batch`` training images."""
    out = {"bare": bare_step(data, CPU, batch)}
    for name in names:
        method, cfg, images, index = first_batch(name, data, batch)
        out[name] = engine_step(method, cfg, images, index, CPU)
    return out


def rounds(timed: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds of each step in each of ``repeats`` rounds, after one untimed step each; the order of the
    steps rotates by one every round, so that none is always first (or always after the same one)."""
    for step in timed.values():
        step()
    names = list(timed)
    seconds = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            began = time.perf_counter()
            timed[name]()
            seconds[name].append(time.perf_counter() - began)
    return seconds


def spread(values: list[float]) -> str:
    """Median [first quartile - third quartile]."""
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    return f"{median:.3g} [{q1:.3g}-{q3:.3g}]"


def table(seconds: dict[str, list[float]], batch: int) -> str:
    """A row per step: images/s and seconds, then the per-round ratio to the bare step."""
    rows = ["| step | images/s | seconds per step | time / bare step (same round) |", "|---|---|---|---|"]
    for name, values in seconds.items():
        ratios = [s / b for s, b in zip(values, seconds["bare"])]
        ratio = "1" if name == "bare" else spread(ratios) + (" (noise: below 1)" if statistics.median(ratios) < 1
                                                             else "")
        label = "bare ResNet-18 forward + backward + SGD" if name == "bare" else f"{name} (`fmnist` preset)"
        rows.append(f"| {label} | {spread([batch / s for s in values])} | {spread(values)} | {ratio} |")
    return "\n".join(rows)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated methods with an fmnist preset (default: all)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-write", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    names = [name for name in args.methods.split(",") if name]
    unknown = [name for name in names if name not in METHODS or "fmnist" not in METHODS[name].PRESETS]
    if unknown:
        parser.error(f"no fmnist preset for {', '.join(unknown)}; choose from "
                     f"{', '.join(n for n in METHODS if 'fmnist' in METHODS[n].PRESETS)}")
    data = datasets.load("fashion-mnist", BARE.image_size, BARE.batch_size)
    seconds = rounds(steps(names, data), args.repeats)
    body = f"""
`python -m bench.throughput`: one optimisation step of the engine at batch {BARE.batch_size} on the same Fashion-MNIST
images, ResNet-18 at 32 px, {torch.get_num_threads()} CPU thread(s), {args.repeats} rounds after a warm-up, the
order rotating each round; median [quartiles]. A method's step includes its batched augmentation on the
device, every view's forward and backward, its heads, loss and memory (bank, queue) and its optimiser; the
bare step is the backbone's forward + backward + SGD on the batch already at 32 px.

{table(seconds, BARE.batch_size)}
"""
    if not args.no_write:
        write_section("Training throughput", body)
    return body


if __name__ == "__main__":
    print(main())
