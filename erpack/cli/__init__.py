"""The `erpack` command: thin subcommands over the library.

Each subcommand lives in its own module of this package and exposes two functions:
`add_parser(subparsers)` (declares its arguments, with help that teaches) and `run(args) -> int`
(calls the library, prints, returns the exit status). The library itself never prints.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from erpack import __version__
from erpack.errors import ErpackError

# Subcommand modules, in the order `erpack --help` lists them.
COMMANDS = ["demo", "assets", "encode", "compress", "codecs", "inspect", "verify", "train", "eval", "prune", "export", "predict", "serve", "bench", "report"]


class CLIError(Exception):
    """An error meant for the user: printed without a traceback, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
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


# Commands that commit their output in steps and resume when run again (see docs/cache-format.md).
RESUMABLE = {"encode"}
# Libraries a command may need that the serve extra leaves out -> the extra that installs them.
EXTRA_OF = {"torch": "full", "transformers": "full", "safetensors": "full", "tqdm": "full", "onnx": "onnx",
            "onnxscript": "onnx", "peft": "train", "matplotlib": "report", "bitsandbytes": "quant", "ray": "scale",
            "pyarrow": "scale", "numba": "tc",
            "fastapi": "serve", "uvicorn": "serve", "prometheus_client": "serve", "starlette": "serve"}
# OSErrors of the machine rather than of erpack: said in one line, exit 2.
# errno -> (what happened, what to do first)
FULL = {errno.ENOSPC: ("the disk is full", "free space"), errno.EDQUOT: ("the disk quota is used up", "free space"),
        errno.EFBIG: ("the file grew past the size limit", "raise the limit (ulimit -f) or write to another file system")}
DENIED = {errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
          errno.EROFS: "the file system is read-only"}


def os_error_message(command: str, exc: OSError) -> str:
    """One line for an OSError: the path, what happened, what is intact and what to do."""
    path = f" {exc.filename}" if exc.filename else ""
    resumes = command in RESUMABLE
    intact = "; the documents committed before it are intact" if resumes else ""
    again = "rerun the same command to resume" if resumes else "run the command again"
    if exc.errno in FULL:
        what, todo = FULL[exc.errno]
        return f"could not write{path}: {what} ({exc.strerror}){intact}; {todo}, then {again}"
    if exc.errno in DENIED:
        return f"could not write or read{path}: {DENIED[exc.errno]}{intact}; fix the permissions or use another path"
    code = errno.errorcode.get(exc.errno, exc.errno)
    return f"{exc.strerror or exc}{':' + path if path else ''} ({code}){intact}; check the path, then {again}"


def _end_bars() -> None:
    """Close progress bars left open by an error, so the message starts a line of its own."""
    tqdm = getattr(sys.modules.get("tqdm"), "tqdm", None)
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def _error(command: str, message: str, status: int) -> int:
    _end_bars()
    try:
        sys.stdout.flush()  # what the command printed comes before the error
    except OSError:
        pass
    print(f"erpack {command}: {message}", file=sys.stderr)
    return status


def _quiet_stdout() -> None:
    """Point stdout at /dev/null: its reader left (`erpack ... | head`), so the exit flush must not fail."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):  # not a real file (a test's capture): nothing to flush later
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # our own bars say what is happening
    try:
        status = int(args.run(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit flush
        return status
    except BrokenPipeError:  # the reader of stdout went away: end quietly, as `cat | head` does
        _quiet_stdout()
        return 141  # 128 + SIGPIPE, what a shell reports for a command the pipe stopped
    except (CLIError, ErpackError) as exc:
        return _error(args.command, f"error: {exc}", 2)
    except ModuleNotFoundError as exc:  # a command run in an install without its extra (the serve extra)
        extra = EXTRA_OF.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        return _error(args.command, f"error: `erpack {args.command}` needs {exc.name}, which this installation "
                      f"lacks (the serve extra runs bundles only): pip install 'erpack[{extra}]'", 2)
    except OSError as exc:  # a full disk, a size limit, a read-only folder: the machine, not erpack
        return _error(args.command, f"error: {os_error_message(args.command, exc)}", 2)
    except KeyboardInterrupt:
        return _error(args.command, "interrupted", 130)


if __name__ == "__main__":
    sys.exit(main())
