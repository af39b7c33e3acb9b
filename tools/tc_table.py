"""Trained codecs (tc) against int4z and int8z, fitted on one half of a set and measured on the other.

Sets: MiniLM (all-MiniLM-L6-v2) at layer 3 and MPNet (all-mpnet-base-v2) at layer 6 over Rotten
Tomatoes reviews and BBC News articles (equal shares of the 5 labels), both in sha256-of-id order,
tokenized as `erpack encode` tokenizes (max length 512); even places fit, odd places are measured
(erpack.experiments.tc_table). Every byte is counted as a cache holds it: blobs (codes and record
headers), token ids (2 bytes a token, 4 where a record has an id >= 65536), and the fitted state
amortized over the measured half; bits per value are shown with and without the state.

Writes one result file per set (docs/results/tc/MODEL-kK-DATASET.json) and renders
docs/results/trained-codecs.md from every result file there; prints a human table and the checks,
then one JSON document as the last line.

    python tools/tc_table.py                          # everything (activations kept under runs/tc_table)
    python tools/tc_table.py --quick --out /tmp/tc --doc /tmp/tc.md   # a smoke run: MiniLM, 200 + 50 documents
    python tools/tc_table.py --spec tc:snr=19 --merge # measure one spec again, keeping the other rows
    python tools/tc_table.py --render-only            # the page again from the result files

Task accuracy (issue 20: the 19 dB cache within 0.5 point of the int4z cache, the 2-bit cache within 1,
modes upper and adapter, 3 seeds, the same seeds on every cache) comes from the training grid, each
cell paired with the int4z cell of its mode and seed (train_table --against int4z), e.g. MiniLM k=3
(about 20 CPU-minutes: 36 runs of ~30 s and 6 encodes; two 1-thread jobs share the work folder):

    W="--work runs/tc-train --model minilm --codecs int4z,tc19,tc2 --modes upper,adapter --seeds 0,1,2 \
       --upper-lr 1e-3 --adapter-lr 2e-3 --rt-sizes 1000,200,1263 --no-baseline"
    python tools/train_table.py $W --datasets rt & python tools/train_table.py $W --datasets bbc; wait
    python tools/train_table.py --work runs/tc-train --table-only --against int4z --markdown
    python tools/tc_table.py --accuracy runs/tc-train --train-command "python tools/train_table.py $W"
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from erpack.experiments.page import command_line, write_page
from erpack.experiments.tc_table import (
    ACCURACY_AGAINST,
    BITS_TOLERANCE,
    DATASETS,
    DECODE_MBPS,
    DOCS,
    RATIO_TARGETS,
    SPECS,
    SQNR_TOLERANCE,
    accuracy_checks,
    accuracy_table,
    measure_all,
    merge_rows,
    result_name,
    target_checks,
)
from erpack.store.atomic import write_atomic

ROOT = Path(__file__).resolve().parents[1]
ACCURACY = "accuracy.json"  # in the results folder: the train_table grid against the int4z cache
SHORT = {"rotten_tomatoes": "RT", "bbc": "BBC"}


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _f(value, fmt: str, none: str = "-") -> str:
    return none if value is None else format(value, fmt)


def _ok(ok) -> str:
    return {True: "yes", False: "**no**", None: "not measured"}[ok]


def markdown(results: list[dict], checks: list[dict]) -> list[str]:
    """The page body: how it was measured, the sets, the checks, a table per set."""
    runs = sorted({(r["command"], r["machine"], r["versions"], r["date"]) for r in results}
                  | {(e["command"], r["machine"], r["versions"], e["date"]) for r in results for e in r.get("earlier", [])})
    lines = ["Each set is dealt into two halves by the sha256 of its documents' ids (even places fit, odd places are "
             "measured); fitted codecs are fitted on the first half (seed 0) and every codec is measured on the second. "
             "`bits all in` counts every byte a cache holds for the measured half: the blobs (`codes+hdr`: codes and "
             "record headers), the token ids as the store writes them (`ids`: 2 bytes a token when every id of the "
             "record is below 65536, else 4) and the fitted state (`state`, amortized over the measured half only: "
             "a cache that also holds the fit half pays less); `no state` leaves the state out. SQNR is over the whole "
             "measured half. `batch dec` is MB of float32 output per second of one thread's CPU time, decoding "
             "length-grouped padded batches of 32 records (erpack.compress.measure), the best of the passes.",
             "", "Runs (command, machine, date):", ""]
    lines += [f"- `{c}` on {m} ({v}), {d}" for c, m, v, d in runs]
    lines += ["", "| set | docs fit / measured | tokens fit / measured | H | measured in | load average (start, end; 2 cores) |",
              "|---|---:|---:|---:|---:|---|"]
    for r in results:
        s = r["set"]
        lines.append(f"| {s['model']} k={s['layer']} / {s['dataset']} | {s['fit_docs']} / {s['docs_measured']} | "
                     f"{s['fit_tokens']} / {s['tokens_measured']} | {s['hidden']} | {r['seconds']:.0f} s | "
                     f"{', '.join(map(str, r['load_average']))} |")
    ratio_text = "; ".join(f"{spec}: at most {', '.join(f'{v:.2f} x {base} on {m}' for m, v in lim.items())}, at an "
                           f"SQNR of at least min({dB:g} dB, {base}'s) - {SQNR_TOLERANCE} dB"
                           for _, spec, base, dB, lim in RATIO_TARGETS)
    lines += ["", f"Targets (issue 20): {ratio_text} (bits all in); tc:bits=B within {BITS_TOLERANCE} bits of B "
              f"(without the state, which is shown apart); batch decode of every fitted codec >= {DECODE_MBPS:.0f} MB/s.",
              "", "| target | set | spec | met | value | miss |", "|---|---|---|---|---:|---|"]
    for c in checks:
        value = ("-" if c["value"] is None else f"{c['value']:.3f} x {c['against']}" if "against" in c else
                 f"{c['value']:.0f} MB/s" if c["target"] == "decode" else f"{c['value']:.3f} bits")
        lines.append(f"| {c['target']} | {c['set']} | `{c['spec']}` | {_ok(c['ok'])} | {value} | {'; '.join(c['why'])} |")
    for r in results:
        s = r["set"]
        lines += ["", f"**{s['model']} k={s['layer']} / {s['dataset']}**", "",
                  "| spec | bits all in | no state | codes+hdr | ids | state | state KB | SQNR dB | token cos | "
                  "enc MB/s | batch dec MB/s | fit CPU s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row in r["rows"]:
            if "error" in row:
                lines.append(f"| `{row['spec']}` | error: {row['error']} |||||||||||")
                continue
            name = row["spec"] if row["spec"] == row["pipeline"] else f"{row['spec']} (`{row['pipeline']}`)"
            lines.append(f"| `{name}` | {row['bits_per_value']:.3f} | {row['bits_without_state']:.3f} | "
                         f"{row['bits_codes']:.3f} | {row['bits_token_ids']:.3f} | {row['bits_state']:.3f} | "
                         f"{row['state_bytes'] / 1e3:.1f} | {_f(row['sqnr_db'], '.2f', 'exact')} | "
                         f"{row['mean_token_cosine']:.5f} | {row['encode_MBps']:.0f} | {row['batch_decode_MBps']:.0f} | "
                         f"{_f(row['fit_cpu_seconds'], '.1f')} |")
    return lines


def accuracy_lines(acc: dict) -> list[str]:
    """The accuracy section: the train_table grid from the trained caches against the int4z cache."""
    lines = ["", "## Task accuracy against the int4z cache", "",
             f"From `{acc['train_command']}` (work folder `{acc['work']}`), paired by `{acc['command']}`: each cell's "
             f"test accuracy against the `{ACCURACY_AGAINST}` cell of the same mode and seeds (Δ = mean over the seeds "
             "of the difference, in points). Targets (issue 20): the 19 dB cache within 0.5 point, the 2-bit cache "
             "within 1 point.", "",
             "| set | codec | mode | seeds | test acc (mean ± sd) | int4z cache | Δ points (min..max) | limit | met |",
             "|---|---|---|---|---:|---:|---:|---:|---|"]
    checks = {(c["set"], c["codec"], c["mode"]): c for c in acc["checks"]}
    for r in acc["rows"]:
        name = f"{r['model']} k={r['layer']}/{r['dataset']}"
        c = checks.get((name, r["codec"], r["mode"]))
        pct = lambda m, sd: "-" if m is None else f"{100 * m:.2f} ± {100 * sd:.2f}"  # noqa: E731
        delta = "-" if r["delta_points_mean"] is None else (f"{r['delta_points_mean']:+.2f} ({r['delta_points_min']:+.2f}.."
                                                           f"{r['delta_points_max']:+.2f})")
        lines.append(f"| {name} | `{r['codec']}` | {r['mode']} | {','.join(map(str, r['seeds']))} | "
                     f"{pct(r['test_accuracy_mean'], r['test_accuracy_sd'])} | "
                     f"{pct(r['baseline_accuracy_mean'], r['baseline_accuracy_sd'])} | {delta} | "
                     f"{'-' if c is None else c['limit']} | {'-' if c is None else _ok(c['ok'])} |")
    return lines


def print_tables(results: list[dict], checks: list[dict]) -> None:
    for r in results:
        s = r["set"]
        print(f"\n{s['model']} k={s['layer']} / {s['dataset']}: fit {s['fit_docs']} docs ({s['fit_tokens']} tokens), "
              f"measured {s['docs_measured']} docs ({s['tokens_measured']} tokens), H {s['hidden']}")
        print(f"{'spec':24s} {'all in':>7s} {'no st.':>7s} {'codes':>7s} {'ids':>6s} {'state':>6s} {'SQNR dB':>8s} "
              f"{'enc MB/s':>9s} {'bdec MB/s':>9s} {'fit s':>6s}")
        for row in r["rows"]:
            if "error" in row:
                print(f"{row['spec']:24s} error: {row['error']}")
                continue
            print(f"{row['spec']:24s} {row['bits_per_value']:7.3f} {row['bits_without_state']:7.3f} "
                  f"{row['bits_codes']:7.3f} {row['bits_token_ids']:6.3f} {row['bits_state']:6.3f} "
                  f"{_f(row['sqnr_db'], '8.2f', '   exact')} {row['encode_MBps']:9.0f} {row['batch_decode_MBps']:9.0f} "
                  f"{_f(row['fit_cpu_seconds'], '6.1f')}")
    print("\nchecks:")
    for c in checks:
        verdict = {True: "MET", False: "missed: ", None: "not measured: "}[c["ok"]] + "; ".join(c["why"])
        print(f"  {c['target']:9s} {c['set']:24s} {c['spec']:14s} {verdict}")


def load_results(folder: Path) -> list[dict]:
    """Every set's result file in `folder`, MiniLM before MPNet, RT before BBC."""
    order = {m: i for i, m in enumerate(("minilm", "mpnet"))}
    results = [json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json")) if p.name != ACCURACY]
    return sorted(results, key=lambda r: (order.get(r["set"]["model"], 9), DATASETS.index(r["set"]["dataset"])
                                          if r["set"]["dataset"] in DATASETS else 9))


def _sizes(args) -> dict:
    docs = dict(DOCS)
    for text in args.size or []:
        try:
            key, n = text.split("=")
            model, dataset = key.split(":")
            docs[(model, {"rt": "rotten_tomatoes"}.get(dataset, dataset))] = int(n)
        except ValueError:
            raise SystemExit(f"--size takes MODEL:DATASET=N (e.g. mpnet:bbc=300), got {text!r}") from None
    return docs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="minilm,mpnet", help="comma-separated: minilm, mpnet")
    p.add_argument("--datasets", default="rt,bbc", help="comma-separated: rt, bbc")
    p.add_argument("--size", action="append", metavar="MODEL:DATASET=N",
                   help="documents of a set, both halves (repeat); default: " +
                        ", ".join(f"{m}:{SHORT[d].lower()}={n}" for (m, d), n in DOCS.items()))
    p.add_argument("--spec", action="append", metavar="SPEC", help="a pipeline to measure (repeat; default: " + ", ".join(SPECS) + ")")
    p.add_argument("--repeat", type=int, default=3, help="timed passes per spec; the fastest is kept (3)")
    p.add_argument("--cache-dir", default=str(ROOT / "runs" / "tc_table"), help="where activations are kept")
    p.add_argument("--out", default=str(ROOT / "docs" / "results" / "tc"), help="folder of the result files")
    p.add_argument("--doc", default=str(ROOT / "docs" / "results" / "trained-codecs.md"), help="the page to render")
    p.add_argument("--no-doc", action="store_true", help="write the result files, leave the page alone")
    p.add_argument("--merge", action="store_true", help="keep the rows of specs not measured now from the result files")
    p.add_argument("--render-only", action="store_true", help="render the page from the result files; measure nothing")
    p.add_argument("--quick", action="store_true", help="smoke run: MiniLM, 200 RT + 50 BBC documents, repeat 1")
    p.add_argument("--accuracy", metavar="WORK", help="pair the training grid of WORK (tools/train_table.py --codecs "
                   f"{ACCURACY_AGAINST},tc19,tc2 ...) against the {ACCURACY_AGAINST} cache into {ACCURACY} and the page; "
                   "measure nothing")
    p.add_argument("--train-command", default="python tools/train_table.py ...",
                   help="with --accuracy: the train_table command that ran the grid, for the page")
    args = p.parse_args()
    out = Path(args.out)
    if args.accuracy:
        table = accuracy_table(Path(args.accuracy))
        out.mkdir(parents=True, exist_ok=True)
        acc = {"command": command_line(), "train_command": args.train_command, "work": args.accuracy,
               "date": time.strftime("%Y-%m-%d"), "rows": table, "checks": accuracy_checks(table)}
        write_atomic(out / ACCURACY, (json.dumps(acc, indent=1) + "\n").encode())
        _stderr(f"wrote {out / ACCURACY}")
    elif not args.render_only:
        datasets = [{"rt": "rotten_tomatoes"}.get(d, d) for d in args.datasets.split(",")]
        docs = _sizes(args)
        if args.quick:
            args.models, args.repeat = "minilm", 1
            docs.update({("minilm", "rotten_tomatoes"): 200, ("minilm", "bbc"): 50})
        fresh = measure_all(args.models.split(","), datasets, args.spec or SPECS, docs, Path(args.cache_dir),
                            args.repeat, command_line(), log=_stderr)
        out.mkdir(parents=True, exist_ok=True)
        for res in fresh:
            path = out / result_name(res["set"]["model"], res["set"]["dataset"])
            if args.merge and path.exists():
                old = json.loads(path.read_text())
                res["rows"] = merge_rows(old["rows"], res["rows"])
                kept = [r["spec"] for r in old["rows"] if r in res["rows"]]
                res["earlier"] = old.get("earlier", []) + [{"command": old["command"], "date": old["date"], "specs": kept}]
            write_atomic(path, (json.dumps(res, indent=1) + "\n").encode())
            _stderr(f"wrote {path}")
    results = load_results(out)
    if not results:
        raise SystemExit(f"no result files in {out}: run without --render-only first")
    checks = target_checks(results)
    acc = json.loads((out / ACCURACY).read_text()) if (out / ACCURACY).exists() else None
    print_tables(results, checks)
    if acc:
        print("\n".join(accuracy_lines(acc)))
    if not args.no_doc:
        write_page(args.doc, "Trained codecs, fitted on one half and measured on the other",
                   "python tools/tc_table.py --render-only" if args.render_only or args.accuracy else command_line(),
                   results[-1]["machine"], markdown(results, checks) + (accuracy_lines(acc) if acc else []))
        _stderr(f"wrote {args.doc}")
    print(json.dumps({"results": results, "checks": checks, "accuracy": acc}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
