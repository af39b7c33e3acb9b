"""The `erpack` command: thin subcommands over the library.

Each subcommand lives in its own module of this package and exposes two functions:
`add_parser(subparsers)` (declares its arguments, with help that teaches) and `run(args) -> int`
(calls the library, prints, returns the exit status). The library itself never prints.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from erpack.errors import ErpackError

# Subcommand modules, in the order `erpack --help` lists them.
COMMANDS = ["demo", "assets", "encode", "compress", "codecs", "inspect", "verify", "train", "eval", "prune", "export", "predict", "bench", "report"]


class CLIError(Exception):
    """An error meant for the user: printed without a traceback, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    from erpack import __version__

    parser = argparse.ArgumentParser(
        prog="erpack",
        description=(
            "Embedding recycling for transformer encoders: run a pretrained encoder's lower layers "
            "once over a corpus, keep the layer-k hidden states in a small checksummed cache, and "
            "train and serve task models that start from layer k."
        ),
        epilog="Run `erpack COMMAND --help` for the options of one command. Docs: docs/cli.md.",
    )
    parser.add_argument("--version", action="version", version=f"erpack {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"erpack.cli.{name}")
        except ModuleNotFoundError as exc:  # a command whose module is not written yet
            if exc.name != f"erpack.cli.{name}":
                raise
            continue
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # our own bars say what is happening
    try:
        return int(args.run(args) or 0)
    except (CLIError, ErpackError) as exc:
        print(f"erpack {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"erpack {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
