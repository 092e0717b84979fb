"""Training throughput: each method's engine step against its bare backbone's, on the same images.

For each method's `fmnist` preset, two steps on the same batch of Fashion-MNIST images: the method's engine
step (its augmentation on the device, its views, heads, loss, memory and hooks, its optimiser) and the bare
step of the very backbone it exports, channels-last as the engine trains it (forward, backward and SGD on the
batch already preprocessed), plus the lineage's yardstick, the bare ResNet-18 step (``bench.bare``). One round
runs every step once, the order rotating from round to round; ``--repeats`` rounds are timed after one untimed
warm-up each, so that all steps see the same machine load. A method's overhead is its time over its backbone's in the same round,
reported as the median with its quartiles: below 1 would be noise, since the method does at least the
backbone's work, and is flagged. Backbones differ (CMC's two half-width streams, CPC's patch encoder), so the
ratio to the yardstick, a method's cost in the lineage's unit, is given beside it; the yardstick keeps PyTorch's
default layout, so there a method may come out below 1.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from train import data as datasets
from train.engine import on_device, training_loader, training_set
from train.methods import METHODS

from .bare import BARE, Bare, bare_step, engine_step, prepared, sync
from .presets import methods_with_preset, parse_methods
from .report import write_section

CPU = torch.device("cpu")


def first_batch(name: str, data: datasets.Data, batch: int):
    """``name``'s `fmnist` method, its config at ``batch`` and its first batch (images, index) of ``data``, through
    its own training set and an unshuffled loader: the first ``batch`` images, as the bare step's."""
    torch.manual_seed(0)
    cfg = METHODS[name].PRESETS["fmnist"].override(batch_size=batch)
    data = datasets.as_fed(data, cfg.normalize)
    method = METHODS[name].build(cfg, len(data.train), data.mean, data.std)
    loader, sampler = training_loader(training_set(data, method), cfg, 0, 1, CPU)
    sampler.shuffle = False
    images, index = next(iter(loader))
    return method, cfg, images, index


def synced(step, device: torch.device):
    """``step`` that returns only once the device has finished it, so that a timer around it is honest."""
    if device.type != "cuda":
        return step
    return lambda: (step(), sync(device))


def step_seconds(step, steps: int, warmup: int) -> list[float]:
    """Seconds of each of ``steps`` calls of ``step``, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    seconds = []
    for _ in range(steps):
        began = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - began)
    return seconds


def own_backbone(method, device: torch.device) -> torch.nn.Module:
    """A copy of the backbone ``method`` exports, with its own parameters (and optimiser), in the layout the engine
    trains the method in: the same convolutions, so that its step is the least the method's can take."""
    backbone = copy.deepcopy(method.export()).requires_grad_(True)  # trainable even where the export is an EMA
    return on_device(backbone, device)                                # teacher (DINO's), frozen in the method


def steps(names: list[str], data: datasets.Data, batch: int = BARE.batch_size, device: torch.device = CPU) -> dict:
    """The yardstick's bare step, then each method's step and its exported backbone's bare step (``NAME bare``),
    all on the first ``batch`` training images, on ``device``."""
    out = {"bare": bare_step(data, device, batch)}
    for name in names:
        method, cfg, images, index = first_batch(name, data, batch)
        ready = prepared(data, index, cfg.image_size).to(device)
        backbone = own_backbone(method, device)
        out[name] = engine_step(on_device(method, device), cfg, images, index, device)  # as fit trains it
        out[f"{name} bare"] = engine_step(Bare(backbone), cfg, ready, index, device)
    return {name: synced(step, device) for name, step in out.items()}


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


def table(seconds: dict[str, list[float]], names: list[str], batch: int) -> str:
    """A row per method: images/s of its step and of its backbone's bare step, the ratio of the two per round, and
    its ratio to the yardstick's bare ResNet-18 step; then the yardstick's row."""
    def ratio(name: str, base: str) -> list[float]:
        return [s / b for s, b in zip(seconds[name], seconds[base])]

    def rate(name: str) -> str:
        return spread([batch / s for s in seconds[name]])

    rows = ["| method (`fmnist` preset) | method step, images/s | its backbone's bare step, images/s | "
            "method / its backbone (same round) | method / bare ResNet-18 |", "|---|---|---|---|---|"]
    for name in names:
        own = ratio(name, f"{name} bare")
        noise = " (noise: below 1)" if statistics.median(own) < 1 else ""
        rows.append(f"| {name} | {rate(name)} | {rate(name + ' bare')} | {spread(own)}{noise} | "
                    f"{spread(ratio(name, 'bare'))} |")
    rows.append(f"| yardstick: bare ResNet-18 (32 px) | - | {rate('bare')} | - | 1 |")
    return "\n".join(rows)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", type=parse_methods, default=",".join(methods_with_preset()),
                        help="comma-separated methods with an fmnist preset (default: all)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-write", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    names = args.methods
    data = datasets.load("fashion-mnist", BARE.image_size, BARE.batch_size)
    seconds = rounds(steps(names, data), args.repeats)
    body = f"""
`python -m bench.throughput`: one engine step at batch {BARE.batch_size} on the same Fashion-MNIST images, {torch.get_num_threads()}
CPU thread(s), {args.repeats} rounds after a warm-up, the order rotating each round; median [quartiles]. A method's
step includes its batched augmentation on the device, every view's forward and backward, its heads, loss and
memory (bank, queue) and its optimiser; its backbone's bare step is forward + backward + SGD of the model it
exports on the batch already preprocessed. The last column puts the step in the lineage's unit, the bare
ResNet-18 step at 32 px (a bare epoch is {60000 // BARE.batch_size} of them).

{table(seconds, names, BARE.batch_size)}
"""
    if not args.no_write:
        write_section("Training throughput", body)
    return body


if __name__ == "__main__":
    print(main())
