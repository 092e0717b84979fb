"""`python -m train METHOD --preset NAME [--resume]`; `torchrun --nproc_per_node N -m train ...` for many GPUs."""
from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from .engine import COMPILE_MODES, fit
from .methods import METHODS


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__)
    parser.add_argument("method", help=f"one of: {', '.join(METHODS)}")
    parser.add_argument("--preset", default="fmnist", help="smoke (seconds), fmnist (CPU benchmark), paper (GPUs)")
    parser.add_argument("--data", help="fashion-mnist, or a folder with train/ and val/ ImageFolders")
    parser.add_argument("--arch", help="any timm architecture")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int, help="global batch size")
    parser.add_argument("--lr", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--out", type=Path, help="run folder for checkpoint, metrics.csv and metrics.png")
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    parser.add_argument("--name", help="zoo name of the exported model")
    parser.add_argument("--no-export", action="store_true")
    parser.add_argument("--compile", nargs="?", const="default", choices=COMPILE_MODES, metavar="MODE",
                        help="torch.compile the networks: fewer kernel launches on a GPU (the first steps compile); "
                             "MODE reduce-overhead also replays them as CUDA graphs")
    args = parser.parse_args(argv)
    if args.method not in METHODS:
        close = difflib.get_close_matches(args.method, METHODS, n=3)
        parser.error(f"unknown method {args.method!r}." + (f" Did you mean {' or '.join(close)}?" if close else
                                                           f" Choose from {', '.join(METHODS)}."))
    presets = METHODS[args.method].PRESETS
    if args.preset not in presets:
        parser.error(f"unknown preset {args.preset!r} for {args.method}; choose from {', '.join(presets)}")
    cfg = presets[args.preset].override(dataset=args.data, arch=args.arch, epochs=args.epochs,
                                        batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    if args.arch and args.arch != presets[args.preset].arch:
        cfg = cfg.override(model_args={})  # the preset's create_model arguments belong to its own architecture
    out = args.out or Path("runs") / f"{args.method}-{args.preset}"
    fit(args.method, args.preset, cfg, out, resume=args.resume, export=not args.no_export, name=args.name,
        compiled=args.compile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
