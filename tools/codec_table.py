"""Measure every codec on real middle-layer activations and write the table in docs/results/codecs.md.

Sets (fixed and deterministic): MiniLM (all-MiniLM-L6-v2) at layer 3 and MPNet (all-mpnet-base-v2)
at layer 6, each over
  - Rotten Tomatoes: the first 300 reviews by stable id (rt-NNNNN order), and
  - BBC News: the first 12 articles of each of the 5 labels by stable id (60 articles),
tokenized with the model's tokenizer, truncated at 512 tokens, padding dropped: one (T, H) float32
record per document, the input of layer k: the lower stack's output, as `erpack encode` stores it
(erpack.experiments.codec_table).

Prints a human table per set and the targets, then one JSON document as the last line, and
rewrites the part of docs/results/codecs.md between its `codec-table` markers.

    python tools/codec_table.py                   # everything, about 5 minutes on 2 CPU cores
    python tools/codec_table.py --quick --no-doc  # a smoke run: 30 + 10 documents, MiniLM only
    python tools/codec_table.py --from-json runs/codec_table.json --no-doc --results docs/results/codecs.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from erpack.experiments.codec_table import SPECS, TARGETS, measure_all, target_checks, worst
from erpack.experiments.page import command_line, write_page
from erpack.store.atomic import write_atomic

ROOT = Path(__file__).resolve().parents[1]
MARK_START, MARK_END = "<!-- codec-table:start -->", "<!-- codec-table:end -->"


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def markdown(result: dict) -> str:
    rows, sets, checks, seconds = result["rows"], result["sets"], result["targets"], result["seconds"]
    took = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
    load = result.get("load_average")
    busy = f" {load[0]} at the start, {load[1]} at the end, on 2 cores" if load else " not recorded"
    lines = [
        f"Measured by `{result['command']}` on {result['machine']} ({result['versions']}), "
        f"{result.get('date', time.strftime('%Y-%m-%d'))}, in {took}. Speeds are MB of fp32 per second of the "
        "measuring thread's CPU time, the best of the passes. `dec` decodes record by record, dropping each array "
        "as a streaming reader does; `batch dec` decodes length-grouped padded batches of 32 records "
        "(`Pipeline.decode_batch`, into reused batch arrays), which is how training, `erpack predict` and "
        "`erpack bench` read the cache, and is what the decode target is checked on. Speeds count real tokens only. "
        f"Load average{busy}: treat speeds as +-20% (this VM's timings drift between runs).",
        "",
        "| set | docs | tokens | mean T | H |",
        "|---|---:|---:|---:|---:|",
    ]
    for s in sets:
        lines.append(f"| {s['name']} | {s['docs']} | {s['tokens']} | {s['tokens'] / s['docs']:.1f} | {s['hidden']} |")
    lines += ["", "Targets, each on all four sets: " + "; ".join(_target_text(n, t) for n, t in TARGETS.items()) + ".", "",
              "| target | pipeline | met | worst bits/value | worst SQNR dB | slowest batch decode MB/s | worst miss |",
              "|---|---|---|---:|---:|---:|---|"]
    for name in TARGETS:
        for spec, met in checks.items():
            if name in met:
                w = worst(rows, spec)
                sq = "exact" if w["sqnr"] is None else f"{w['sqnr']:.2f}"
                lines.append(f"| {name} | `{spec}` | {'yes' if met[name]['ok'] else 'no'} | {w['bits']:.3f} | {sq} | "
                             f"{w['dec']:.0f} | {'; '.join(met[name]['why'])} |")
    for s in sets:
        lines += ["", f"**{s['name']}**", "",
                  "| spec | bits/value | x fp32 | SQNR dB | token cos | enc MB/s | dec MB/s | batch dec MB/s |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in (r for r in rows if r["set"] == s["name"]):
            sqnr = "exact" if r["sqnr_db"] is None else f"{r['sqnr_db']:.2f}"
            lines.append(f"| `{r['spec']}` | {r['bits_per_value']:.3f} | {r['ratio_vs_fp32']:.2f} | {sqnr} | "
                         f"{r['mean_token_cosine']:.5f} | {r['encode_MBps']:.0f} | {r['decode_MBps']:.0f} | "
                         f"{r['batch_decode_MBps']:.0f} |")
    return "\n".join(lines)


def _target_text(name, target) -> str:
    _, bits, sqnr, dec = target
    parts = [f"<= {bits} bits/value" if bits else "", f">= {sqnr} dB" if sqnr else "", f">= {dec:.0f} MB/s batch decode" if dec else ""]
    return f"{name}: " + ", ".join(p for p in parts if p)


def write_doc(path: Path, table_md: str) -> None:
    text = path.read_text() if path.exists() else f"# Codecs\n\n{MARK_START}\n{MARK_END}\n"
    if MARK_START not in text or MARK_END not in text:
        raise SystemExit(f"{path} has no {MARK_START} ... {MARK_END} markers to put the table between")
    head, rest = text.split(MARK_START, 1)
    _, tail = rest.split(MARK_END, 1)
    write_atomic(path, f"{head}{MARK_START}\n{table_md}\n{MARK_END}{tail}".encode())


def print_tables(result: dict) -> None:
    for s in result["sets"]:
        print(f"\n{s['name']}: {s['docs']} docs, {s['tokens']} tokens, hidden {s['hidden']}")
        print(f"{'spec':42s} {'bits/val':>8s} {'x fp32':>7s} {'SQNR dB':>8s} {'tok cos':>8s} {'enc MB/s':>9s} {'dec MB/s':>9s} {'batch dec':>9s}")
        for row in (r for r in result["rows"] if r["set"] == s["name"]):
            sqnr = "exact" if row["sqnr_db"] is None else f"{row['sqnr_db']:.2f}"
            print(f"{row['spec']:42s} {row['bits_per_value']:8.3f} {row['ratio_vs_fp32']:7.2f} {sqnr:>8s} "
                  f"{row['mean_token_cosine']:8.5f} {row['encode_MBps']:9.0f} {row['decode_MBps']:9.0f} "
                  f"{row['batch_decode_MBps']:9.0f}")
    print("\ntargets (all sets):")
    for spec, met in result["targets"].items():
        for name, m in met.items():
            print(f"  {name:12s} {spec:42s} {'MET' if m['ok'] else 'missed: ' + '; '.join(m['why'])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="minilm,mpnet", help="comma-separated: minilm, mpnet")
    parser.add_argument("--rt-docs", type=int, default=300, help="first N Rotten Tomatoes reviews by id (300)")
    parser.add_argument("--bbc-per-label", type=int, default=12, help="first N BBC articles of each label by id (12)")
    parser.add_argument("--spec", action="append", metavar="SPEC", help="a pipeline to measure (repeat; default: the list in SPECS)")
    parser.add_argument("--repeat", type=int, default=5, help="timed passes per spec; the fastest is kept (5)")
    parser.add_argument("--cache-dir", default=str(ROOT / "runs" / "codec_table"), help="where activations are kept")
    parser.add_argument("--doc", default=str(ROOT / "docs" / "results" / "codecs.md"), help="markdown file to update")
    parser.add_argument("--no-doc", action="store_true", help="print only; leave the doc alone")
    parser.add_argument("--quick", action="store_true", help="smoke run: 30 + 10 documents, MiniLM, repeat 1")
    parser.add_argument("--from-json", metavar="FILE",
                        help="re-render from the output of an earlier run (its last line) instead of measuring")
    parser.add_argument("--results", metavar="FILE.md", default=None,
                        help="also write the tables as a results page (e.g. docs/results/codecs.md)")
    args = parser.parse_args()
    if args.quick:
        args.models, args.rt_docs, args.bbc_per_label, args.repeat = "minilm", 30, 2, 1
    if args.from_json:
        result = json.loads(Path(args.from_json).read_text().strip().splitlines()[-1])
    else:
        result = measure_all(args.models.split(","), args.spec or SPECS, args.rt_docs, args.bbc_per_label,
                             Path(args.cache_dir), args.repeat, command_line(), log=_stderr)
    result["targets"] = target_checks(result["rows"])
    print_tables(result)
    if not args.no_doc:
        write_doc(Path(args.doc), markdown(result))
        print(f"wrote the table into {args.doc}", file=sys.stderr)
    if args.results:
        write_page(args.results, "Codecs on real activations", result["command"],
                   f"{result['machine']} ({result['versions']})", markdown(result).split("\n"))
        print(f"wrote {args.results}", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
