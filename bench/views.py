"""`python -m bench.views`: making a step's views, ours (``train.batch_transforms``) against the same recipes in
kornia's transforms, which ``train.augment`` used before, on this machine's device.

For each method's `fmnist` views: the views of the first 256 Fashion-MNIST training images (two per image, InstDisc's one),
each side once per round, the order alternating, ``--repeats`` rounds after a warm-up; the median [quartiles]
of views per second. Then, per call, the tensor operators dispatched, the kernels they launch (at 32 px a GPU
step is bound by launches, not arithmetic) and the host syncs among them (each makes the host wait for the
GPU's queue), counted as ``bench.dispatch`` counts them for a whole step in ``bench.step_ops``. kornia's twin is built from our modules, number for number (crop in "resample" mode, one
warp per batch); SimCLR's jitter (v1's and v2's) is the authors' TensorFlow one, which kornia does not have, so
SimCLR is measured on our side only. kornia is not a dependency: without it, only ours is measured.
"""
from __future__ import annotations

import argparse
import torch

from train import batch_transforms as T
from train import data as datasets
from train.augment import to_rgb_float
from train.blocks.views import TwoViews
from train.methods import METHODS

from .bare import sync
from .dispatch import dispatched
from .report import device_title, write_section
from .throughput import rounds, spread, synced

METHODS_MEASURED = ("instdisc", "invaspread", "moco", "mocov2", "simclr", "simclrv2")
BATCH = 256
class KorniaTwin(torch.nn.Module):
    """The same views in kornia's transforms, from our modules' numbers, with as many views per image."""

    def __init__(self, ops: list, copies: int):
        super().__init__()
        self.ops, self.copies = torch.nn.Sequential(*ops), copies

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.ops(to_rgb_float(torch.cat([images] * self.copies)))  # stacked as TwoViews stacks them


def kornia_twin(views: torch.nn.Module) -> KorniaTwin | None:
    """kornia's twin of a method's ``augment`` (one view maker, or ``TwoViews`` of one), or None where one of
    its transforms has no twin in kornia."""
    from kornia import augmentation as K

    def twin(op):
        match op:
            case T.RandomResizedCrop():
                return K.RandomResizedCrop((op.size, op.size), op.scale, op.ratio, cropping_mode="resample")
            case T.ColorJitter():
                return K.ColorJitter(op.brightness, op.contrast, op.saturation, op.hue, p=op.p)
            case T.RandomGrayscale():
                return K.RandomGrayscale(p=op.p)
            case T.RandomGaussianBlur() if op.padding == "reflect" and not op.per_batch_sigma:
                return K.RandomGaussianBlur(op.kernel, op.sigma, p=op.p)
            case T.RandomHorizontalFlip():
                return K.RandomHorizontalFlip(p=op.p)
            case T.Normalize():
                return K.Normalize(op.mean.flatten(), op.std.flatten())
        return None

    one, copies = (views.augment, 2) if isinstance(views, TwoViews) else (views, 1)
    ops = [twin(op) for op in one.ops]
    return None if None in ops else KorniaTwin(ops, copies)


def sides(name: str, images: torch.Tensor, device: torch.device, with_kornia: bool) -> dict:
    """Each side's views of ``images`` as a timed step, and how many views a call makes."""
    cfg = METHODS[name].PRESETS["fmnist"]
    stats = datasets.fed_stats(datasets.FMNIST_STATS, cfg.normalize)
    views = METHODS[name].build(cfg, BATCH, stats["mean"], stats["std"]).augment.to(device)
    out = {"ours": views}
    if with_kornia and (theirs := kornia_twin(views)):
        out["kornia"] = theirs.to(device)
    with torch.no_grad():
        count = len(views(images))
    return {side: synced(torch.no_grad()(lambda fn=fn: fn(images)), device) for side, fn in out.items()}, count


def row(name: str, timed: dict, count: int, repeats: int) -> str:
    seconds = rounds(timed, repeats)
    counts = {side: dispatched(fn) for side, fn in timed.items()}

    def cell(side: str, value) -> str:
        return str(value(side)) if side in timed else "-"

    rate = lambda side: spread([count / s for s in seconds[side]])  # noqa: E731
    ratio = spread([k / o for k, o in zip(seconds["kornia"], seconds["ours"])]) if "kornia" in timed else "-"
    counted = [cell(side, lambda side: getattr(counts[side], what))
               for what in ("total", "kernels", "syncs") for side in ("ours", "kornia")]
    return f"| {name} | {rate('ours')} | {cell('kornia', rate)} | {ratio} | {' | '.join(counted)} |"


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(prog="python -m bench.views", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-write", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        import kornia  # noqa: F401
        with_kornia = True
    except ImportError:
        with_kornia = False
    data = datasets.load("fashion-mnist", 32, BATCH)
    images = torch.stack([data.train[i][0] for i in range(BATCH)]).to(device)
    torch.manual_seed(0)
    rows = [row(name, *sides(name, images, device, with_kornia), args.repeats) for name in METHODS_MEASURED]
    sync(device)
    body = f"""
`python -m bench.views`: the views of {BATCH} Fashion-MNIST images (two per image at 32 px, InstDisc's one) as each
method's `fmnist` preset makes them, ours against the same recipe in kornia's transforms; {args.repeats} rounds after a warm-up,
the two sides alternating; median [quartiles]. Operators, kernels and host syncs are counted per call as
`bench.step_ops` counts a whole step (aten operators as they reach the backend; a sync stalls the host until
the GPU's queue drains).
{"" if with_kornia else "kornia is not installed here: only our side was measured."}

| method | ours, views/s | kornia, views/s | kornia / ours, time (same round) | ours, operators | kornia, operators | ours, kernels | kornia, kernels | ours, host syncs | kornia, host syncs |
|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
"""
    if not args.no_write:
        write_section(device_title("Making the views", device), body)
    return body


if __name__ == "__main__":
    print(main())
