"""`python -m bench.profile_step METHOD`: where one training step of a method's `fmnist` preset spends its
time on this machine's device, the data already there, printed (nothing is written).

Three timings, each the median of ``--steps`` steps after warm-up and each ended by a device sync: the
method's views alone (``method.augment``), our whole engine step, and, for the methods lightly also has
(`bench.vs_lightly`), lightly's step on a batch its loader already made, so that its rate without the
loader tells whether its end-to-end rate is bound by its workers. Then torch.profiler's table of our
step, sorted by the host's time per operator (where a launch-bound step goes) and by the device's, with
the number of kernel launches per step.
"""
from __future__ import annotations

import argparse
import statistics

import torch
from torch.profiler import ProfilerActivity, profile

from train import data as datasets

from . import vs_lightly
from .bare import sync
from .throughput import step_seconds, synced


def median_seconds(step, steps: int, warmup: int = 3) -> float:
    return statistics.median(step_seconds(step, steps, warmup))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_step", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("method", choices=list(vs_lightly.METHOD_NAMES))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rows", type=int, default=25, help="operators listed per table")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = vs_lightly.preset(args.method)
    data = datasets.load("fashion-mnist", cfg.image_size, 4 * cfg.batch_size)
    ours = vs_lightly.Ours(args.method, cfg, data, device)
    images, index = next(iter(ours.loader))
    images, index = images.to(device), index.to(device)
    method, batch = ours.model, cfg.batch_size

    def our_step():
        ours.step((images, index), 0)

    def views():
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            method.augment(images)

    rates = {"our views alone": median_seconds(synced(views, device), args.steps),
             "our step": median_seconds(synced(our_step, device), args.steps)}
    try:
        theirs = vs_lightly.Lightly(args.method, cfg, data, device, workers=0)
        ready = next(iter(theirs.loader))
        rates["lightly's step, its batch ready"] = median_seconds(synced(lambda: theirs.step(ready, 0), device),
                                                                  args.steps)
    except ImportError:
        print("lightly is not installed: its step is left out (pip install -e '.[bench]')")
    for name, seconds in rates.items():
        print(f"{name}: {seconds * 1e3:.2f} ms, {batch / seconds:.0f} images/s")

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            our_step()
        sync(device)
    events = prof.key_averages()
    kernels = sum(e.count for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
    print(f"\n{kernels / args.steps:.0f} kernel launches per step")
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.rows))
    if device.type == "cuda":
        print(events.table(sort_by="self_cuda_time_total", row_limit=args.rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
