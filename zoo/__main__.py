"""`python -m zoo list | info NAME | convert NAME --src FILE | publish NAME`."""
from __future__ import annotations

import argparse
import sys

import zoo
from zoo.registry import ENTRIES


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every model name, and whether its weights are here")
    commands.add_parser("info", help="what a model is and where its weights are").add_argument("name")
    convert = commands.add_parser("convert", help="turn the authors' released checkpoint into the zoo format")
    convert.add_argument("name")
    convert.add_argument("--src", required=True, help="the authors' checkpoint file")
    convert.add_argument("--out", help="output folder (default: $ZOO_HOME/NAME)")
    publish = commands.add_parser("publish", help="upload a checkpoint folder to the Hugging Face Hub")
    publish.add_argument("name")
    publish.add_argument("--repo", help="ORG/NAME (default: contrastive-zoo/NAME)")
    publish.add_argument("--private", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            for name in zoo.list_models():
                entry = ENTRIES.get(name)
                here = "local" if (zoo.zoo_home() / name).is_dir() else "-"
                kind = f"{entry.method:10} {entry.arch:10} {entry.dataset:14}" if entry else f"{'':36}"
                print(f"{name:32} {kind} {here}")
        elif args.command == "info":
            for key, value in zoo.info(args.name).items():
                print(f"{key:12} {value}")
        elif args.command == "convert":
            from zoo.convert import convert as run
            print(run(args.name, args.src, args.out))
        elif args.command == "publish":
            from zoo.publish import publish as run
            print(run(args.name, args.repo, private=args.private))
    except zoo.ZooError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
