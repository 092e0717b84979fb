"""`python -m bench.step_ops`: the tensor operators one training step dispatches, ours against lightly's, for
the two methods of `bench.vs_lightly` (SimCLR, MoCo v2), on this machine's device.

At 32 px and a batch of a few hundred, a GPU step is too small to be bound by arithmetic: the host's work
per operator dispatched and the kernels launched set its time. Each side's step is the one
`bench.vs_lightly` times, on one batch its own loader made (lightly's views come ready from its workers;
ours are made inside the step, so they are counted apart as well). One warm-up step, then one counted step,
the backward pass and the optimiser included, counted as ``bench.dispatch`` counts (operators, kernels, host
syncs). A count is exact and does not depend on the machine's load, but it is the device's own: on a CPU,
torch's SGD steps parameter by parameter, on CUDA it does not, so `bench.gpu` counts again there.
"""
from __future__ import annotations

import argparse

import torch

from train import data as datasets

from . import vs_lightly
from .dispatch import Dispatched, dispatched
from .report import device_title, write_section


def counted_step(step, batch) -> Dispatched:
    """The operators of ``step(batch, 1)``, after one warm-up step (which fills what a first step creates)."""
    step(batch, 0)
    return dispatched(lambda: step(batch, 1))


def ours(name: str, cfg, data, device) -> tuple[Dispatched, Dispatched]:
    """Our whole step and our views alone, on one batch of the engine's loader."""
    side = vs_lightly.Ours(name, cfg, data, device)
    images, index = (t.to(device) for t in next(iter(side.loader)))
    step = counted_step(side.step, (images, index))
    with torch.no_grad():
        views = dispatched(lambda: side.model.augment(images))
    return step, views


def lightly(name: str, cfg, data, device) -> Dispatched | None:
    try:
        side = vs_lightly.Lightly(name, cfg, data, device, workers=0)
    except ImportError:
        return None
    return counted_step(side.step, next(iter(side.loader)))


def row(name: str, step: Dispatched, views: Dispatched, theirs: Dispatched | None) -> str:
    ours = f"{step.total} ({views.total}) | {step.kernels} ({views.kernels}) | {step.syncs}"
    lightly_cells = f"{theirs.total} | {theirs.kernels} | {theirs.syncs} | {step.total / theirs.total:.2f}" if theirs \
        else "- | - | - | -"
    return f"| {vs_lightly.METHOD_NAMES[name]} | {ours} | {lightly_cells} |"


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(prog="python -m bench.step_ops", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-write", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows, missing = [], False
    for name in vs_lightly.METHOD_NAMES:
        cfg = vs_lightly.preset(name)
        data = datasets.load("fashion-mnist", cfg.image_size, 4 * cfg.batch_size)
        step, views = ours(name, cfg, data, device)
        theirs = lightly(name, cfg, data, device)
        missing |= theirs is None
        rows.append(row(name, step, views, theirs))
    body = f"""
`python -m bench.step_ops`: the aten operators one training step of each method's `fmnist` preset dispatches
(forward, backward and optimiser, counted as they reach the backend), ours against the same step in lightly
(`bench.vs_lightly`'s two sides, the second step on one batch). Our views are made in the step and counted in
it, and apart in brackets; lightly's are made by its DataLoader workers, outside it. **Operators**: each costs
the host its dispatch; at 32 px a GPU step is too small to hide that cost, so the host's work per step bounds
it. **Kernels**: the operators that launch one (views, reshapes and allocations do not). **Host syncs**:
operators the host must wait for (a value or a size read back, a boolean mask's index, a copy to the host or
from pageable memory), each a stall until the device's queue drains. Exact counts, the same on any machine's
load, but the device's own: {"on this CPU, torch's SGD steps parameter by parameter, as on CUDA it does not" if device.type == "cpu" else "CUDA's"}.
A multi-tensor operator (`_foreach_`) counts once.
{"lightly is not installed here (pip install -e '.[bench]'): only our side was counted." if missing else ""}

| method | ours: operators (views) | ours: kernels (views) | ours: host syncs | lightly: operators | lightly: kernels | lightly: host syncs | operators, ours / lightly |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
"""
    if not args.no_write:
        write_section(device_title("Operators per training step", device), body)
    return body


if __name__ == "__main__":
    print(main())
