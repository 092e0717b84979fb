"""`python -m bench.compile_gain`: each method's engine step eager against the same step with its networks
compiled (``train --compile MODE``), on the same batch, on this machine's device.

For each method's `fmnist` preset, copies of one model (same seed), one eager and one per compile mode (default
everywhere; reduce-overhead, CUDA graphs, on a GPU only), step the same first batch of Fashion-MNIST images.
Each compiled copy's first steps compile it (their seconds are reported); then ``--repeats`` rounds, the order
rotating (``bench.throughput.rounds``), so that every copy sees the same machine load. Reported: images per
second (median [quartiles]) and the eager step's time over the compiled one's in the same round (above 1: the
compiled step is faster).
"""
from __future__ import annotations

import copy
import time

import torch

from train import data as datasets
from train.engine import compile_networks, on_device

from .bare import BARE, engine_step
from .presets import step_rounds_parser
from .report import device_title, write_section
from .throughput import first_batch, rounds, spread, synced

DEFAULT = "mocov2,simclr"
WARMUP = 3  # untimed steps of each compiled copy: the first compiles, CUDA graph trees record on a later one


def modes(device: torch.device) -> list[str]:
    return ["default", "reduce-overhead"] if device.type == "cuda" else ["default"]


def steps(name: str, data: datasets.Data, batch: int, device: torch.device) -> tuple[dict, dict[str, float]]:
    """``name``'s engine step eager and compiled in each mode, keyed by the mode, and each compiled copy's seconds
    of warm-up (its compiling)."""
    method, cfg, images, index = first_batch(name, data, batch)
    images, index = images.to(device), index.to(device)
    timed, compiling = {}, {}
    for mode in ["eager", *modes(device)]:
        model = on_device(copy.deepcopy(method), device)
        step = synced(engine_step(model, cfg, images, index, device), device)
        if mode != "eager":  # in place: the step calls the compiled networks
            compile_networks(model, mode)
            began = time.perf_counter()
            for _ in range(WARMUP):
                step()
            compiling[mode] = time.perf_counter() - began
        timed[mode] = step
    return timed, compiling


def main(argv=None) -> str:
    args = step_rounds_parser("python -m bench.compile_gain", __doc__, DEFAULT).parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = datasets.load("fashion-mnist", BARE.image_size, BARE.batch_size)
    batch = BARE.batch_size
    compiled = modes(device)
    header = ["method (`fmnist` preset)", "eager, images/s",
              *(f"{mode}, images/s | eager / {mode}, time (same round) | {mode}, compiling s" for mode in compiled)]
    rows = ["| " + " | ".join(header) + " |", "|---" * (2 + 3 * len(compiled)) + "|"]
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 16)  # every copy its graphs
    for name in args.methods:
        timed, compiling = steps(name, data, batch, device)
        seconds = rounds(timed, args.repeats)
        cells = [spread([batch / s for s in seconds["eager"]])]
        for mode in compiled:
            gain = [e / c for e, c in zip(seconds["eager"], seconds[mode])]
            cells += [spread([batch / s for s in seconds[mode]]), spread(gain), f"{compiling[mode]:.0f}"]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    where = "a GPU (bf16 autocast)" if device.type == "cuda" else f"a CPU, {torch.get_num_threads()} thread(s)"
    body = f"""
`python -m bench.compile_gain`: each method's engine step at batch {batch} (32 px) on {where}, eager and with
its networks compiled (`train --compile MODE`: {", ".join(compiled)}), copies of one model on the same batch,
{args.repeats} rounds timed interleaved after {WARMUP} untimed steps of each compiled copy (their seconds, the
compiling, in the last column): images per second, median [quartiles], and the eager step's time over the
compiled one's in the same round (above 1: compiling pays).

""" + "\n".join(rows)
    print(body)
    if not args.no_write:
        write_section(device_title("Compiled steps", device), body)
    return body


if __name__ == "__main__":
    main()
