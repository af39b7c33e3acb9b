"""Pruning levels against the unpruned task model: upper-stack parameters, CPU latency, test accuracy.

    python tools/prune_table.py --datasets rt,bbc --levels 0.2,0.4,0.6 --work runs/prune \
        --train-limit 3000 --epochs 2 --recovery-epochs 1 --seeds 0
    python tools/prune_table.py --work runs/prune --table-only      # the table from results.jsonl

Per (data set, seed): train the unpruned task model from the cache (`erpack train --mode upper`),
score importance once on --samples training documents, then per level p prune p of the upper
stack's heads and p of its neurons and recover with LoRA (distilling the unpruned logits). Every
model is scored on the test split; latency is one forward pass of the upper stack on a batch of 32
test documents (padded to the batch's longest), all levels timed in turns (A, B, C, ...), median
of --repeats rounds after a warm-up. Caches must exist (see docs/pruning.md for the encode
commands). Rows are appended to WORK/results.jsonl as they finish. Prints a human table, then one
JSON document as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from erpack.errors import ErpackError
from erpack.experiments.grid import RESULTS, load_results
from erpack.experiments.pruning import PruneGrid, prune_table, run_levels
from erpack.runtime.timing import describe_machine

HEADER = (f"{'model':<7} {'data':<5} {'pruned':>6} {'upper params':>12} {'x':>5} {'latency ms':>10} {'x':>5} "
          f"{'test acc (sd)':>15} {'delta (min..max)':>20} {'seeds':>5}")


def _verdict(key: str, v: dict) -> str:
    if v["largest_level_within_1_point"] is None:
        return f"{key}: largest level within 1 point: none"
    return (f"{key}: largest level within 1 point: {v['largest_level_within_1_point']:.0%}, latency "
            f"x{v['latency_ratio']:.2f} ({'meets' if v['meets_0_65'] else 'misses'} <= 0.65)")


def table_lines(summary: dict) -> list[str]:
    """One line per (model, data set, level), then the verdict of each (model, data set)."""
    lines = [HEADER]
    for rows in summary["rows"].values():
        for r in rows:
            spread = f"{r['delta_points']:+.2f} ({r['delta_min']:+.2f}..{r['delta_max']:+.2f})"
            lines.append(f"{r['model']:<7} {r['dataset']:<5} {r['level']:>6.0%} {r['params'] / 1e6:>11.2f}M "
                         f"{r['params_ratio']:>5.2f} {r['latency_ms']:>10.1f} {r['latency_ratio']:>5.2f} "
                         f"{r['accuracy']:>8.4f} ({r['accuracy_sd']:.4f}) {spread:>20} {r['seeds']:>5}")
    return lines + [_verdict(key, v) for key, v in summary["verdicts"].items()]


def markdown_lines(summary: dict) -> list[str]:
    """The table as Markdown, then the verdicts as a list."""
    lines = ["| model | data | pruned | upper params | x | latency ms | x | test acc (sd) | Δ points (min..max) | seeds |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for rows in summary["rows"].values():
        for r in rows:
            lines.append(f"| {r['model']} | {r['dataset']} | {r['level']:.0%} | {r['params'] / 1e6:.2f}M | "
                         f"{r['params_ratio']:.2f} | {r['latency_ms']:.1f} | {r['latency_ratio']:.2f} | "
                         f"{r['accuracy']:.4f} ({r['accuracy_sd']:.4f}) | {r['delta_points']:+.2f} "
                         f"({r['delta_min']:+.2f}..{r['delta_max']:+.2f}) | {r['seeds']} |")
    return lines + [""] + [f"- {_verdict(key, v)}" for key, v in summary["verdicts"].items()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="runs/prune")
    p.add_argument("--model", default="minilm", help="name used in the cache folder names (cache-MODEL-DATASET)")
    p.add_argument("--datasets", default="rt,bbc")
    p.add_argument("--levels", default="0.2,0.4,0.6")
    p.add_argument("--seeds", default="0")
    p.add_argument("--train-limit", type=int, default=None)
    p.add_argument("--validation-limit", type=int, default=None, help="first N validation documents only")
    p.add_argument("--test-limit", type=int, default=None, help="first N test documents only")
    p.add_argument("--subset", choices=["hash", "first"], default="hash", help="which N documents the limits keep: "
                   "a fixed sample by sha1 of the id (default), or the first N in the data set's order")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    p.add_argument("--epochs", type=int, default=2, help="epochs of the unpruned task model")
    p.add_argument("--lr", type=float, default=1e-4, help="lr of the unpruned task model (mode upper)")
    p.add_argument("--recovery-epochs", type=int, default=1)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--samples", type=int, default=512)
    p.add_argument("--repeats", type=int, default=21)
    p.add_argument("--no-distill", action="store_true")
    p.add_argument("--table-only", action="store_true")
    p.add_argument("--results", metavar="FILE.md", default=None,
                   help="also write the table as a results page (e.g. docs/results/pruning.md): the command, the "
                        "machine, the Markdown table and the verdicts")
    args = p.parse_args(argv)
    import torch
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers.logging.set_verbosity_error()
    cfg = PruneGrid(work=Path(args.work), model=args.model, levels=[float(x) for x in args.levels.split(",") if x],
                    train_limit=args.train_limit, validation_limit=args.validation_limit, test_limit=args.test_limit,
                    subset=args.subset, epochs=args.epochs, lr=args.lr, recovery_epochs=args.recovery_epochs,
                    rank=args.rank, samples=args.samples, repeats=args.repeats, distill=not args.no_distill)
    out = cfg.work / RESULTS
    if not args.table_only:
        done = {(r["model"], r["dataset"], r["seed"]) for r in load_results(out)}
        try:
            for ds in args.datasets.split(","):
                for seed in (int(s) for s in args.seeds.split(",")):
                    if (args.model, ds, seed) not in done:
                        run_levels(cfg, ds, seed)
        except ErpackError as e:
            print(f"prune_table: error: {e}", file=sys.stderr)
            return 2
    results = load_results(out)
    summary = prune_table(results)
    threads = sorted({r["threads"] for r in results if "threads" in r}) or [torch.get_num_threads()]
    machine = {**describe_machine(args.threads), "torch_threads": threads}
    print("\n".join(table_lines(summary)))
    print(f"machine: {machine}")
    if args.results:
        from erpack.experiments.page import command_line, write_page

        write_page(args.results, "Pruning-adapters: levels against the unpruned task model", command_line(), machine,
                   markdown_lines(summary))
        print(f"wrote {args.results}", file=sys.stderr)
    print(json.dumps({"machine": machine, **summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
