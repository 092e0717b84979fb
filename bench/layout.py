"""The convolutions' layout: each method's engine step channels-last (NHWC) against PyTorch's default (NCHW), on
the same batch, to check the layout the engine picks for it (``train.engine.training_layout``).

Channels-last is the layout oneDNN and cuDNN compute convolutions in, so it usually wins. MoCo's one-device
shuffling BN (``SplitBatchNorm``) is the exception the engine makes: it normalises groups of images by viewing
(N, C, H, W) as (N / g, C g, H, W), which is free in NCHW and, in NHWC, a copy out of the layout before each
BatchNorm and one back into it at the next convolution. For each method's `fmnist` preset, two copies of one
model (same seed), one per layout, step the same first batch of Fashion-MNIST images; ``--repeats`` rounds, the
order rotating, after one untimed step each (``bench.throughput.rounds``), so that both see the same machine load.
Reported: images per second (median [quartiles]), NCHW's time over NHWC's in the same round (above 1:
channels-last is faster), and the operators one step dispatches in each layout (``bench.dispatch``: exact, on
any load).
"""
from __future__ import annotations

import copy

import torch

from train import data as datasets
from train.engine import training_layout

from .bare import BARE, engine_step
from .dispatch import dispatched
from .report import device_title, write_section
from .presets import step_rounds_parser
from .throughput import first_batch, rounds, spread, synced

LAYOUTS = {"NHWC": torch.channels_last, "NCHW": torch.contiguous_format}
DEFAULT = "moco,mocov2,instdisc,simclr"


def layout_name(fmt: torch.memory_format) -> str:
    return next(name for name, f in LAYOUTS.items() if f == fmt)


def steps(name: str, data: datasets.Data, batch: int, device: torch.device) -> tuple[dict, str]:
    """``name``'s engine step in each layout, keyed by the layout, and the layout the engine trains it in."""
    method, cfg, images, index = first_batch(name, data, batch)
    out = {layout: engine_step(copy.deepcopy(method).to(device, memory_format=fmt), cfg, images.to(device),
                               index.to(device), device) for layout, fmt in LAYOUTS.items()}
    return out, layout_name(training_layout(method))


def operators(step) -> int:
    step()  # a first step creates what later ones reuse (optimiser state, a queue's fill)
    return dispatched(step).total


def main(argv=None) -> str:
    args = step_rounds_parser("python -m bench.layout", __doc__, DEFAULT).parse_args(argv)
    names = args.methods
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = datasets.load("fashion-mnist", BARE.image_size, BARE.batch_size)
    batch = BARE.batch_size
    rows = ["| method (`fmnist` preset) | NHWC, images/s | NCHW, images/s | NCHW / NHWC, time (same round) | "
            "NHWC, operators | NCHW, operators | the engine trains it |", "|---|---|---|---|---|---|---|"]
    for name in names:
        timed, picked = steps(name, data, batch, device)
        counts = {layout: operators(step) for layout, step in timed.items()}
        seconds = rounds({layout: synced(step, device) for layout, step in timed.items()}, args.repeats)
        ratio = [n / c for n, c in zip(seconds["NCHW"], seconds["NHWC"])]
        rows.append(f"| {name} | {spread([batch / s for s in seconds['NHWC']])} | "
                    f"{spread([batch / s for s in seconds['NCHW']])} | {spread(ratio)} | {counts['NHWC']} | "
                    f"{counts['NCHW']} | {picked} |")
    body = f"""
`python -m bench.layout`: each method's engine step at batch {batch} (32 px) with its convolutions channels-last
(NHWC) and in PyTorch's default layout (NCHW), two copies of one model on the same batch, {args.repeats} rounds
timed interleaved after a warm-up: images per second, median [quartiles], and NCHW's time over NHWC's in the
same round (above 1: channels-last is faster). Operators: one step's, as `bench.step_ops` counts them. The last
column is the layout `train.engine.training_layout` trains the method in: NCHW where its model holds a
`SplitBatchNorm` (MoCo's shuffling BN on one device), whose groups are a free view in NCHW and two copies per
BatchNorm in NHWC.

""" + "\n".join(rows)
    print(body)
    if not args.no_write:
        write_section(device_title("The convolutions' layout", device), body)
    return body


if __name__ == "__main__":
    main()
