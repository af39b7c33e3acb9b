"""Write docs/cli.md from the argument parser itself, so the CLI reference never drifts.

    .venv/bin/python tools/cli_docs.py            # rewrite docs/cli.md
    .venv/bin/python tools/cli_docs.py --check    # exit 1 if docs/cli.md is out of date
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from erpack.cli import build_parser  # noqa: E402
from erpack.experiments.page import publish  # noqa: E402

HEADER = """# The `erpack` command

Generated from the argument parser by `tools/cli_docs.py`; do not edit by hand. Every command
takes `--help`. Commands that report take `--json` and then print one JSON document as their last
line. User errors (bad input, a mismatched cache) print one line naming the file, the record and
what to do, and exit with status 2.
"""


def render() -> str:
    os.environ["COLUMNS"] = "100"
    parser = build_parser()
    parts = [HEADER, "```text", parser.format_help().rstrip(), "```"]
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        parts += [f"\n## erpack {name}\n", "```text", p.format_help().rstrip(), "```"]
    return "\n".join(parts) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only check that docs/cli.md is current")
    args = ap.parse_args()
    done = publish(ROOT / "docs" / "cli.md", render(), args.check, "tools/cli_docs.py")
    if done.message:
        print(done.message, file=sys.stderr)
    return done.rc


if __name__ == "__main__":
    sys.exit(main())
