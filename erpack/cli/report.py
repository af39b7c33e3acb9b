"""`erpack report`: storage size, monthly cost and break-even reuse count per codec, as HTML + Markdown + JSON."""

from __future__ import annotations

import json
import shlex
import sys

from erpack.cli import CLIError
from erpack.cli.storage import add_storage_options, cache_where, storage_options


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="storage-cost report: size, monthly cost and break-even reuse count per codec (HTML, Markdown, JSON)",
        description=(
            "Measure each CACHE (bytes per token and per document, from its index; codec speed on a sample of "
            "its records), re-encode a sample of the reference cache with each --codec (the first lossless CACHE, "
            "e.g. one encoded with fp32+zstd:3, else the first CACHE, with a note that a lossy reference "
            "understates both size and error), project the size and "
            "monthly cost of a corpus of --documents (or --tokens) with the --profile length distribution, and "
            "the break-even number of reuse runs after which the cache has paid for itself. With --bench, the "
            "end-to-end speedups and accuracy of `erpack bench -o FILE` runs are tabled and plotted. Writes "
            "OUTPUT (one self-contained HTML file), and OUTPUT.md (+ PNG figures) and OUTPUT.json beside it. "
            "Docs: docs/benchmarks.md."
        ),
    )
    p.add_argument("caches", nargs="+", metavar="CACHE", help="cache folders or URLs (erpack encode)")
    p.add_argument("--codec", action="append", default=[], metavar="SPEC",
                   help="also re-encode a sample of the reference cache (the first lossless CACHE, else the first) with "
                   "this codec (repeatable)")
    p.add_argument("--bench", action="append", default=[], metavar="FILE", help="erpack bench JSON (repeatable)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--documents", type=float, help="documents in the projected corpus (default 100000000)")
    size.add_argument("--tokens", type=float, help="tokens in the projected corpus (instead of --documents)")
    p.add_argument("--profile", help="length profile: bbc, rotten_tomatoes, or a cache folder (default: first CACHE)")
    p.add_argument("--price-per-gib-month", "--price-per-gb-month", dest="price_per_gib_month", type=float,
                   default=0.023, help="storage $ per GiB-month (2^30 bytes: what clouds call a GB-month; "
                   "default 0.023). The report states every size in binary units (KiB, MiB, GiB, TiB)")
    p.add_argument("--price-per-hour", type=float, default=0.10,
                   help="compute $ per hour of the machine that encodes and runs models (default 0.10)")
    p.add_argument("--months", type=float, default=1.0, help="months the cache is kept (default 1)")
    p.add_argument("--sample", type=int, default=200, help="records per cache to time and re-encode (default 200)")
    p.add_argument("--no-lower-timing", action="store_true", help="skip timing the lower stack (no break-even)")
    p.add_argument("-o", "--output", default="report.html", help="HTML file to write (default report.html)")
    p.add_argument("--json", action="store_true", help="print the report JSON as the last line")
    add_storage_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from erpack.report import ReportConfig, build_report, write_report  # measuring loads torch
    from erpack.report.render import tables

    if args.sample < 1:
        raise CLIError(f"--sample must be at least 1, got {args.sample}")
    for cache in args.caches:  # a bad URL fails here, naming it, before any measuring
        cache_where(cache, args)
    documents = args.documents if args.documents is not None or args.tokens is not None else 100_000_000
    cfg = ReportConfig(caches=args.caches, codecs=args.codec, bench=args.bench, documents=documents,
                       tokens=args.tokens, profile=args.profile, price_per_gib_month=args.price_per_gib_month,
                       price_per_hour=args.price_per_hour, months=args.months, sample=args.sample,
                       time_lower=not args.no_lower_timing, storage_options=storage_options(args),
                       command="erpack report " + " ".join(shlex.quote(a) for a in sys.argv[2:]))
    rep = build_report(cfg, log=lambda msg: print(msg, file=sys.stderr))
    for title, header, rows in tables(rep):
        cells = [header] + rows
        widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
        print(f"\n{title}")
        for r in cells:
            print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    for n in rep.notes:
        print(f"note: {n}")
    written = write_report(rep, args.output)
    print(f"\nwrote {written['html']}, {written['markdown']}, {written['json']}")
    if args.json:
        print(json.dumps(rep.as_dict(), default=float))
    return 0
