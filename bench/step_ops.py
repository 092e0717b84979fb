"""`python -m bench.step_ops`: the tensor operators one training step dispatches, ours against lightly's, for
the two methods of `bench.vs_lightly` (SimCLR, MoCo v2), on this machine's device.

At 32 px and a batch of a few hundred, a GPU step is too small to be bound by arithmetic: the host's work
per operator dispatched and the kernels launched set its time. Each side's step is the one
`bench.vs_lightly` times, on one batch its own loader made (lightly's views come ready from its workers;
ours are made inside the step, so they are counted apart as well). One warm-up step, then one counted step:
every aten operator that reaches a backend, the backward pass and the optimiser included; those that only
make a view of a tensor or allocate one launch no kernel. Host syncs (a device value read back by the host,
on a GPU a stall until its queue drains) are the operators that read one; a read inside another
operator's own code (a boolean mask's index) is not seen, so they are a lower bound. A count is exact and
does not depend on the machine's load, but it is the device's own: on a CPU, F.one_hot checks its range
with a read and torch's SGD steps parameter by parameter, on CUDA neither, so `bench.gpu` counts again
there. A multi-tensor (``_foreach_``) operator counts once though it launches a kernel per chunk.
"""
from __future__ import annotations

import argparse
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from train import data as datasets

from . import vs_lightly
from .report import write_section

# operators that make a view of a tensor or allocate one: no kernel launch
NO_KERNEL = {"view", "_unsafe_view", "as_strided", "as_strided_", "detach", "alias", "expand", "permute", "t", "t_",
             "transpose", "transpose_", "unsqueeze", "unsqueeze_", "squeeze", "squeeze_", "slice", "select",
             "diagonal", "unfold", "split", "split_with_sizes", "chunk", "unbind", "_reshape_alias", "empty",
             "empty_like", "empty_strided", "new_empty", "new_empty_strided", "lift_fresh", "set_", "resize_"}
# operators whose result's size or value the host must read
HOST_SYNCS = {"_local_scalar_dense", "nonzero", "masked_select", "_unique", "_unique2", "unique_dim",
              "unique_consecutive", "bincount", "histc", "repeat_interleave"}


def to_host(name: str, args, kwargs) -> bool:
    """A copy from a device to the host's memory: a sync as well."""
    if name == "_to_copy":
        source, destination = args[0], kwargs.get("device")
    elif name == "copy_":
        source, destination = args[1], args[0].device
    else:
        return False
    return (isinstance(source, torch.Tensor) and source.device.type != "cpu" and destination is not None
            and torch.device(destination).type == "cpu")


class Dispatched(TorchDispatchMode):
    """Counts each aten operator by name as it reaches a backend (after autograd: the backward's included)."""

    def __init__(self):
        super().__init__()
        self.ops: Counter = Counter()
        self.reads_back = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name, kwargs = func.overloadpacket.__name__, kwargs or {}
        self.ops[name] += 1
        self.reads_back += name in HOST_SYNCS or to_host(name, args, kwargs)
        return func(*args, **kwargs)

    @property
    def total(self) -> int:
        return sum(self.ops.values())

    @property
    def kernels(self) -> int:
        return sum(n for op, n in self.ops.items() if op not in NO_KERNEL)

    @property
    def syncs(self) -> int:
        return self.reads_back


def dispatched(fn) -> Dispatched:
    with Dispatched() as counted:
        fn()
    return counted


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
operators that read a device value back, each a stall until the device's queue drains (a read inside another
operator's own code is not seen: a lower bound). Exact counts, the same on any machine's load, but the device's
own: {"on this CPU, F.one_hot checks its range with a read and torch's SGD steps parameter by parameter, as on CUDA neither does" if device.type == "cpu" else "CUDA's"}.
A multi-tensor operator (`_foreach_`) counts once.
{"lightly is not installed here (pip install -e '.[bench]'): only our side was counted." if missing else ""}

| method | ours: operators (views) | ours: kernels (views) | ours: host syncs | lightly: operators | lightly: kernels | lightly: host syncs | operators, ours / lightly |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
"""
    if not args.no_write:
        write_section("Operators per training step" + (" on a GPU" if device.type == "cuda" else ""), body)
    return body


if __name__ == "__main__":
    print(main())
