"""`python -m app.demo` (`make demo`): get a model, build its Fashion-MNIST bank, serve the search app.

1. Resolve the model (local zoo, Hugging Face cache, then the Hub); if there is none, train it
   with `python -m train instdisc --preset PRESET` in a subprocess (the app never imports train).
2. Build the bank of the Fashion-MNIST test split (10k images) unless a fresh one exists, for it and
   for every other small model in $ZOO_HOME (each method trained here), for "Side by side".
3. Serve every sound, fresh bank in $ZOO_HOME/banks (listing those left out, and why) on 127.0.0.1:7860 ($APP_HOST, $APP_PORT, --host, --port).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import zoo
from zoo.resolve import local_names

from . import bank as banks
from . import gallery
from .search import Searcher

PUBLISHED = "instdisc-resnet18-fmnist"
SMALL = 64  # pixels: models trained at this input size or below get a Fashion-MNIST bank at start-up
ROOT = Path(__file__).resolve().parents[1]  # the project: `python -m train` runs from here, runs/ lands here


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def default_model(preset: str) -> str:
    """The name `python -m train instdisc --preset PRESET` exports (fmnist: the published zoo name)."""
    return PUBLISHED + ("" if preset == "fmnist" else f"-{preset}")


def pick_model(preset: str) -> str:
    """The published model where it resolves (local zoo, Hugging Face cache, the Hub), else the preset's."""
    try:
        zoo.resolve(PUBLISHED)
        return PUBLISHED
    except zoo.ZooError:
        return default_model(preset)


def ensure_model(model: str, preset: str, train: bool = True) -> Path:
    """The model's checkpoint folder, training it first if no copy resolves."""
    try:
        folder = zoo.resolve(model)
        say(f"model {model}: {folder}")
        return folder
    except zoo.ZooError:
        if not train:
            raise
        say(f"no trained {model} in {zoo.zoo_home()} yet, and {PUBLISHED} is neither there, "
            "in the Hugging Face cache, nor reachable on the Hub")
    command = [sys.executable, "-m", "train", "instdisc", "--preset", preset, "--name", model]
    say(f"training it: {' '.join(command[1:])} (minutes on a CPU, with a progress bar)")
    done = subprocess.run(command, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"[demo] training failed (exit {done.returncode}); see its output above. "
                         f"Fix the cause and rerun, or train by hand: python {' '.join(command[1:])}")
    return zoo.resolve(model, download=False)


def ensure_searcher(model: str, limit: int = 0) -> Searcher:
    """A searcher over a fresh Fashion-MNIST bank of ``model``: the saved bank, or a new one if it is missing,
    stale or of another size. The model is loaded once, and the bank checked against the weights loaded."""
    path = banks.default_path(model, gallery.FASHION_MNIST)
    opened = banks.open_model(model)
    try:
        bank = banks.load(path)
        if not limit or bank.meta["count"] == limit:
            searcher = Searcher(bank, opened)  # refuses a stale bank
            say(f"bank {path}: {bank.meta['count']} images, up to date")
            return searcher
        say(f"bank {path} has {bank.meta['count']} images, {limit} wanted: rebuilding")
    except banks.BankError as error:  # stale, damaged, of other features, or none yet
        say(f"{error} Rebuilding it." if path.exists() else f"no bank at {path}: building it")
    bank = banks.build(model, gallery.FASHION_MNIST, limit=limit, opened=opened)
    banks.save(bank, path)
    say(f"bank written to {path}")
    return Searcher(bank, opened)


def small_models() -> list[str]:
    """The models in $ZOO_HOME that take inputs of at most ``SMALL`` pixels (those this zoo trains on a CPU):
    the demo banks each of them, so that "Side by side" compares every method trained here. Larger
    models (converted ImageNet releases) are served when a bank of theirs exists, never built unasked."""
    names = []
    for name in local_names():
        try:
            size = zoo.checkpoint.read_config(zoo.zoo_home() / name)["pretrained_cfg"]["input_size"][-1]
        except (OSError, ValueError, KeyError, IndexError):
            continue  # damaged: servable() reports it if it has a bank
        if size <= SMALL:
            names.append(name)
    return names


def servable(ready: list[Searcher]) -> tuple[list[Searcher], list[str]]:
    """``ready``, then a searcher for every other bank under $ZOO_HOME/banks that is sound and fresh, and a line
    for each one left out: one broken bank or model never stops the others being served."""
    have = {searcher.bank.path.resolve() for searcher in ready if searcher.bank.path}
    served, left_out = list(ready), []
    for path in banks.discover():
        if path.resolve() in have:
            continue
        try:
            served.append(Searcher(banks.load(path)))  # loads its model and checks the bank against those weights
        except zoo.ZooError as error:  # stale, damaged, or its model is gone or broken: say so, never search it
            left_out.append(f"{path.name}: {error}")
    return served, left_out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo",
                        help="training preset if the published model is not found (demo: minutes, smoke: seconds)")
    parser.add_argument("--model", help="zoo model to serve (default: the published one, else what the preset exports)")
    parser.add_argument("--limit", type=int, default=0, help="bank only the first N test images (quick checks)")
    parser.add_argument("--host", help="address to listen on (default $APP_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default $APP_PORT or 7860)")
    parser.add_argument("--no-train", action="store_true", help="fail instead of training a missing model")
    parser.add_argument("--no-launch", action="store_true", help="prepare model and bank, then exit")
    args = parser.parse_args(argv)
    model = args.model or pick_model(args.preset)
    try:
        ensure_model(model, args.preset, train=not args.no_train)
    except zoo.ZooError as error:  # a name that resolves nowhere: the user asked for it, so stop and say so
        print(f"[demo] error: {error}", file=sys.stderr)
        return 1
    ready, problems = [], []
    for name in [model] + [m for m in small_models() if m != model]:
        try:
            ready.append(ensure_searcher(name, args.limit))
        except (zoo.ZooError, FileNotFoundError) as error:  # its weights are damaged: serve the other banks
            problems.append(f"{name}: {error}")
    served, left_out = servable(ready)
    for line in problems + left_out:
        say(f"not serving {line}")
    if not served:
        print("[demo] error: no bank can be served (see above). Fix the first problem listed, or build a bank "
              "with `python -m app.bank build --model NAME`.", file=sys.stderr)
        return 1
    if args.no_launch:
        say(f"ready: {len(served)} bank(s); not launching (--no-launch)")
        return 0
    from . import ui  # gradio is slow to import: only when serving

    say(f"serving {', '.join(s.bank.model for s in served)}")
    ui.launch(ui.build_ui(served), host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
