"""Training throughput: the engine's InstDisc step against the bare backbone's forward + backward.

The two steps are timed interleaved (one of each, then again, ``--repeats`` times) so that both see
the same machine load, and reported as medians with their spread: timed one after the other, a
load that changes mid-run can make the InstDisc step, which does strictly more work, look faster.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from train import optim
from train.config import Config
from train.engine import Schedules, train_step
from train.methods.base import Method, Progress, StepOutput
from train.methods.instdisc import PRESETS, build

from .report import write_section

CPU = torch.device("cpu")


class Bare(Method):
    """The backbone alone on already augmented images: forward, a scalar, backward."""

    def __init__(self, backbone: torch.nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, images, index, progress) -> StepOutput:
        return StepOutput(self.backbone(images).square().mean())


def engine_step(method: Method, cfg: Config, images, index):
    """A closure running one engine step (schedules, forward, backward, hooks, optimiser) of ``method``."""
    plan = Schedules.of(cfg, steps_per_epoch=1000)
    optimizer = optim.build(method, cfg, plan.base_lr)
    return lambda: train_step(method, method, optimizer, plan, images, index, Progress(0, 0, 1000), cfg, CPU)


def interleaved(steps: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds of each step, ``repeats`` times, alternating between them after one warm-up each."""
    for step in steps.values():
        step()
    seconds = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            began = time.perf_counter()
            step()
            seconds[name].append(time.perf_counter() - began)
    return seconds


def spread(values: list[float]) -> str:
    """Median [first quartile - third quartile]."""
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return f"{median:.3g} [{q1:.3g}-{q3:.3g}]"


def main(batch: int = 256, repeats: int = 10, write: bool = True) -> str:
    cfg = PRESETS["fmnist"]
    torch.manual_seed(0)
    images = torch.randint(0, 256, (batch, 1, 28, 28), dtype=torch.uint8)
    index = torch.randperm(60000)[:batch]
    method = build(cfg, 60000, (0.286,) * 3, (0.353,) * 3)
    with torch.no_grad():
        ready = method.augment(images)
    seconds = interleaved({"instdisc": engine_step(method, cfg, images, index),
                           "bare": engine_step(Bare(method.backbone), cfg, ready, index)}, repeats)
    per_second = {name: [batch / s for s in values] for name, values in seconds.items()}
    ratios = [i / b for i, b in zip(seconds["instdisc"], seconds["bare"])]
    body = f"""
`python -m bench.throughput`: one optimisation step of the engine at batch {batch}, {cfg.arch} at
{cfg.image_size} px, timed {repeats} times interleaved with the bare step (median [quartiles]). The InstDisc
step includes batched augmentation, the 128-d head, NCE against {cfg.method['negatives']} noise rows and the
memory-bank update; the bare step is backbone forward + backward + SGD on already augmented images.

| step | images/s | seconds per step |
|---|---|---|
| InstDisc (`fmnist` preset) | {spread(per_second['instdisc'])} | {spread(seconds['instdisc'])} |
| bare {cfg.arch} forward + backward | {spread(per_second['bare'])} | {spread(seconds['bare'])} |
| time ratio InstDisc / bare, per pair | {spread(ratios)} | |
"""
    if write:
        write_section("Training throughput", body)
    return body


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-write", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    args = parser.parse_args()
    print(main(args.batch, args.repeats, write=not args.no_write))
