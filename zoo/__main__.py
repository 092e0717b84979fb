"""`python -m zoo list | info NAME | convert NAME [--src FILE|URL] | card NAME | push NAME --repo ORG/NAME`."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import zoo
from zoo.registry import ENTRIES, STAGE_NAMES, STAGES

# the cards of the models the project publishes, kept in the repository (`python -m zoo card NAME` writes them)
MODEL_CARDS = Path(__file__).resolve().parents[1] / "model_cards"
COLUMNS = ("name", "method", "stage", "architecture", "data", "top-1", "weights")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every model, what it is, and whether its weights are on this machine")
    commands.add_parser("info", help="what a model is and where its weights are").add_argument("name")
    convert = commands.add_parser("convert", help="turn the authors' released checkpoint into the zoo format")
    convert.add_argument("name")
    convert.add_argument("--src", help="the authors' checkpoint, a file or a URL (default: download the registry's "
                                       "release into $ZOO_HOME/.downloads/, checked against its SHA-256)")
    convert.add_argument("--out", help="output folder (default: $ZOO_HOME/NAME)")
    card = commands.add_parser("card", help="write a model's card (default: model_cards/NAME.md)")
    card.add_argument("name", nargs="?")
    card.add_argument("--all", action="store_true", help="every registry entry's card (trained ones: where their "
                                                          "weights are on this machine)")
    card.add_argument("--out", help="the file to write (default: model_cards/NAME.md in the repository); "
                                    "with --all, the folder")
    push = commands.add_parser("push", aliases=["publish"], help="upload a checkpoint folder to the Hugging Face Hub")
    push.add_argument("name")
    push.add_argument("--repo", help="ORG/NAME (default: contrastive-zoo/NAME)")
    push.add_argument("--tag", help="the release tag (default: v{zoo version}-{short sha256 of the weights})")
    push.add_argument("--private", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            print(table(rows()))
        elif args.command == "info":
            for key, value in zoo.info(args.name).items():
                print(f"{key:12} {value}")
        elif args.command == "convert":
            from zoo.convert import convert as run
            from zoo.download import release

            print(run(args.name, release(args.name, args.src), args.out))
        elif args.command == "card":
            if args.all == bool(args.name):
                parser.error("card takes a NAME or --all")
            folder = Path(args.out) if args.out and args.all else MODEL_CARDS
            for name in ENTRIES if args.all else [args.name]:
                try:
                    print(write_card(name, Path(args.out) if args.out and not args.all else folder / f"{name}.md"))
                except zoo.ZooError as error:
                    if not args.all:
                        raise
                    print(f"skipped {name}: {error}", file=sys.stderr)
        elif args.command in ("push", "publish"):
            from zoo.publish import publish

            try:
                print(publish(args.name, args.repo, private=args.private, tag=args.tag))
            except zoo.ZooError:
                raise
            except Exception as error:  # the Hub said no (auth, rights) or could not be reached
                raise zoo.ZooError(f"publishing {args.name} failed: {type(error).__name__}: "
                                   f"{(str(error).splitlines() or [''])[0][:300]}. Fix: log in with `hf auth login` "
                                   "(or set HF_TOKEN) with write access to the repository, and check the network."
                                   ) from None
    except zoo.ZooError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def rows() -> list[dict]:
    """One row per model ``zoo.load`` knows, looking only at this machine (never the network)."""
    from huggingface_hub import try_to_load_from_cache

    from zoo.checkpoint import CONFIG, WEIGHTS, is_checkpoint, read_config

    out = []
    for name in zoo.list_models():
        entry, local = ENTRIES.get(name), zoo.zoo_home() / name
        if entry:
            method, arch, data = entry.method, entry.arch, entry.dataset
            top1 = f"{entry.linear_top1:.1f}" if entry.linear_top1 is not None else "-"
        else:  # a checkpoint of the local zoo folder: its config and card say what it is
            method, data, top1 = _card_says(local)
            arch = read_config(local).get("architecture", "-") if (local / CONFIG).is_file() else "-"
        if is_checkpoint(local):
            weights = "local"
        elif entry and isinstance(try_to_load_from_cache(entry.hub_id, WEIGHTS, revision=entry.revision or None), str):
            weights = "hf cache"
        else:
            weights = "-"
        stage = f"{STAGES[method]} {STAGE_NAMES[STAGES[method]]}" if method in STAGES else "-"
        out.append(dict(zip(COLUMNS, (name, method, stage, arch, data, top1, weights))))
    return out


def _card_says(folder: Path) -> tuple[str, str, str]:
    """(method, data, reported top-1) from a checkpoint card's metadata, "-" for what it does not say."""
    from huggingface_hub.repocard import metadata_load

    try:
        meta = metadata_load(folder / "README.md") or {}
    except (OSError, ValueError):
        meta = {}
    method = next((tag for tag in meta.get("tags") or [] if tag in STAGES), "-")
    return method, ((meta.get("datasets") or ["-"])[0]), "-"


def table(rows: list[dict]) -> str:
    """The rows as aligned columns under a header."""
    cells = [[column.upper() for column in COLUMNS]] + [[str(row[column]) for column in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in cells)


def write_card(name: str, out: Path) -> Path:
    """Write ``name``'s card to ``out`` (atomically): an authors' entry's card from the registry; any other model's
    is the README.md of its checkpoint (a trained model's card holds the kNN its export measured)."""
    from zoo import card
    from zoo.checkpoint import CARD

    entry = ENTRIES.get(name)
    if entry and entry.source == "authors":
        text = card.for_entry(entry)
    else:
        folder = zoo.resolve(name, download=False)
        if not (folder / CARD).is_file():
            raise zoo.ZooError(f"{folder} has no {CARD}. Fix: export the model again, which writes its card.")
        text = (folder / CARD).read_text()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        staging.write_text(text)
        os.replace(staging, out)  # a reader sees the old card or the new one, never half of one
    finally:
        staging.unlink(missing_ok=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
