"""docs/results/early-exit.md from the committed result files of early exit (no training, no timing).

    python tools/exit_page.py            # write the page from docs/results/depth/*-runs.json and onnx-*.json
    python tools/exit_page.py --check    # exit 1 when the page is not what those files render

The files are tools/exit_table.py's (MODEL-kK-runs.json: accuracy and layers per data set, rule and seed) and
tools/exit_speed.py's (onnx-*.json: ONNX Runtime documents/s), plus MODEL-kK-notes.md and
pruned-exits-notes.md (the runs' sizes, machine and caveats, written by whoever ran them). One section per
encoder; whether issue 22's target holds is worked out from the numbers. The core is
erpack.experiments.exit_page.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from erpack.experiments.exit_page import PAGE, RESULTS, TOOL, page_text
from erpack.experiments.page import publish


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folder", default=str(RESULTS), help="folder of the result files (default: docs/results/depth)")
    p.add_argument("--page", default=str(PAGE), help="the page to write (default: docs/results/early-exit.md)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 when the page is out of date")
    args = p.parse_args(argv)
    done = publish(Path(args.page), page_text(Path(args.folder)), args.check, TOOL)
    if done.message:
        print(done.message, file=sys.stderr)
    elif not args.check:
        print(f"wrote {args.page}", file=sys.stderr)
    return done.rc


if __name__ == "__main__":
    sys.exit(main())
