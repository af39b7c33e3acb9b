"""Accuracy and time of training from the cache against the full fine-tune, over data sets, codecs, modes, seeds.

    python tools/train_table.py --model minilm --datasets rt,bbc --codecs fp32,int8z,int4z \
        --modes upper,adapter --seeds 0,1,2 --work runs/train
    python tools/train_table.py --work runs/train --table-only        # the table from results.jsonl

For each (model, data set) it writes a corpus (the first --rt-sizes / --bbc-sizes train, validation and
test documents: RT in file order, BBC in sha256(id) order), encodes it once per codec (the one-off cost, timed), then
for each seed fine-tunes the whole model from text once (the baseline) and trains every (codec, mode)
from the cache with the same seed, data, batches, epochs and head. Every run is appended to
WORK/results.jsonl as it finishes, so an interrupted grid resumes. Prints a human table, then one JSON
document as the last line.

A second test sample: `--test-decile D` re-deals the corpus's train and test documents by the hash
that makes the splits (erpack.assets.bucket_of): those in decile D are the test split, the rest train,
validation unchanged (D = 9 is the default split; 8 is validation's). The documents are the same, so
the caches are shared. The table pairs every run with the baseline of its seed and decile, pools the
deciles of one tag, and gives a 95% paired-bootstrap interval of the mean difference over the test
documents (runs record which test documents they got right). `--results docs/results/NAME.md` also
writes the table as a results page. The grid, the table and its statistics are erpack.experiments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from erpack.errors import ErpackError, InputError
from erpack.experiments.grid import RESULTS, load_results
from erpack.experiments.training import TrainGrid, grid_table, run_grid, run_timing, timing_table
from erpack.runtime.timing import describe_machine


def _timing_lines(timing: list[dict]) -> list[str]:
    """The interleaved epoch times, one header line per (model, data set) and a line per contender."""
    lines, group = [], None
    if timing:
        lines += ["", "epoch time, interleaved rounds (median s; ratio to the full fine-tune; time the model waited "
                  "on the cache)"]
    for t in timing:
        if group != (t["model"], t["dataset"], t["layer"], t["documents"], t["tokens"]):
            group = (t["model"], t["dataset"], t["layer"], t["documents"], t["tokens"])
            lines.append(f"{t['model']} {t['dataset']} k={t['layer']}: {t['documents']} docs, {t['tokens']} tokens, "
                         f"{t['rounds']} round(s): full {t['full_seconds']:.1f} s")
        lines.append(f"    {t['what']:<22} {t['seconds']:7.1f} s  ratio {t['ratio']:.3f}  waited {t['wait_seconds']:.2f} s")
    return lines


def _log(row: dict) -> None:
    """One line per run as it finishes."""
    r = row.get("result")
    if row["kind"] == "encode":
        text = f"encoded {row['model']} {row['dataset']} {row['codec']}: {row['seconds']:.1f} s, {row['bytes'] / 1e6:.1f} MB"
    elif row["kind"] == "baseline":
        text = (f"baseline {row['model']} {row['dataset']} seed {row['seed']}: test {r['test']['accuracy']:.4f}, "
                f"{r['train_seconds_per_epoch']:.1f} s/epoch")
    elif row["kind"] == "recycled":
        text = (f"{row['mode']} {row['model']} {row['dataset']} {row['codec']} seed {row['seed']}: test "
                f"{r['test']['accuracy']:.4f}, {r['train_seconds_per_epoch']:.1f} s/epoch, waited "
                f"{sum(e['wait_seconds'] for e in r['epochs']):.1f} s")
    else:
        text = (f"timing {row['model']} {row['dataset']} round {row['seed']}: "
                + ", ".join(f"{k} {v:.1f}" for k, v in row["seconds"].items()))
    print(text, flush=True)


def _ms(row: dict, key: str) -> str:
    """`key`_mean ± `key`_sd of a table row, in percent ("-" when absent)."""
    if row[f"{key}_mean"] is None:
        return "-"
    return f"{100 * row[f'{key}_mean']:.2f} ± {100 * row[f'{key}_sd']:.2f}"


def _delta(row: dict) -> str:
    if row["delta_points_mean"] is None:
        return "-"
    text = f"{row['delta_points_mean']:+.2f} ({row['delta_points_min']:+.2f}..{row['delta_points_max']:+.2f})"
    if row["delta_points_ci95"]:
        text += " [{:+.2f}, {:+.2f}]".format(*row["delta_points_ci95"])
    return text


def _text_lines(out: list[dict]) -> list[str]:
    w = max([len(r["tag"]) for r in out] + [3]) + 2
    ref = _reference(out)
    header = (f"{'tag':<{w}}{'model':<7}{'data':<5}{'k':>3} {'codec':<17}{'mode':<8}{'runs':>5}  {'test acc (mean ± sd)':>21}  "
              f"{ref:>15}  {'Δ pts (min..max)':>22}  {'s/epoch':>7}  {'base s/ep':>9}  {'ratio':>5}  "
              f"{'encode s':>8}  {'break-even ep':>13}")
    lines = [header, "-" * len(header)]
    for r in out:
        ratio = f"{r['epoch_time_ratio']:.2f}" if r["epoch_time_ratio"] else "-"
        lines.append(f"{r['tag']:<{w}}{r['model']:<7}{r['dataset']:<5}{r['layer']:>3} {r['codec']:<17}{r['mode']:<8}"
                     f"{len(r['seeds']):>5}  {_ms(r, 'test_accuracy'):>21}  {_ms(r, 'baseline_accuracy'):>15}  "
                     f"{_delta(r):>22}  {r['seconds_per_epoch']:>7.1f}  {r['baseline_seconds_per_epoch']:>9.1f}  "
                     f"{ratio:>5}  {r['encode_seconds'] or float('nan'):>8.1f}  {r['break_even_epochs']:>13.1f}")
    return lines


def _decile_lines(out: list[dict]) -> list[str]:
    """Δ by test decile, for the rows that span more than one."""
    spanning = [r for r in out if len(r["delta_points_by_decile"]) > 1]
    lines = ["", "Δ points by test decile (mean over its seeds); mean over deciles"] if spanning else []
    for r in spanning:
        parts = " · ".join(f"{d}: {v:+.2f}" for d, v in r["delta_points_by_decile"].items())
        lines.append(f"{r['tag']} {r['model']} {r['dataset']} {r['codec']} {r['mode']}: {parts}; "
                     f"mean over deciles {r['delta_points_decile_mean']:+.2f}")
    return lines


def _lrs(values: list[float]) -> str:
    return "/".join(f"{v:g}" for v in values) or "-"


def _reference(out: list[dict]) -> str:
    """What the table's rows are paired with: "baseline" (the full fine-tune) or the cache of --against."""
    return next((f"{r['against']} cache" for r in out if r.get("against")), "baseline")


def _markdown_lines(out: list[dict]) -> list[str]:
    ref = _reference(out)
    lines = [f"| tag | model, k | data | codec | mode | lr ({'full' if ref == 'baseline' else ref}) | runs | "
             f"test acc (mean ± sd) | {ref} | "
             "Δ points (min..max) | within 1 point |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in out:
        ok = {True: "yes", False: "**no**", None: "-"}[r["within_1_point"]]
        lines.append(f"| {r['tag']} | {r['model']}, {r['layer']} | {r['dataset']} | {r['codec']} | {r['mode']} | "
                     f"{_lrs(r['lr'])} ({_lrs(r['baseline_lr'])}) | {len(r['seeds'])} | {_ms(r, 'test_accuracy')} | "
                     f"{_ms(r, 'baseline_accuracy')} | {_delta(r)} | {ok} |")
    return lines


def _page(path: str, result: dict) -> None:
    """docs/results/NAME.md: the Markdown table, then the decile and timing lines as text."""
    from erpack.experiments.page import command_line, write_page

    extra = _decile_lines(result["rows"]) + _timing_lines(result["timing"])
    body = _markdown_lines(result["rows"]) + (["", "```", *[x for x in extra if x], "```"] if extra else [])
    write_page(path, "Training from the cache against the full fine-tune", command_line(), result["machine"], body)
    print(f"wrote {path}", file=sys.stderr)


def _grid(args) -> TrainGrid:
    sizes = {}
    for ds in ("rt", "bbc"):
        text = getattr(args, f"{ds}_sizes")
        sizes[ds] = tuple(int(x) for x in text.split(","))
        if len(sizes[ds]) != 3:
            raise InputError(f"--{ds}-sizes takes train,validation,test documents, got {text!r}")
    return TrainGrid(models=args.model.split(","), datasets=args.datasets.split(","), codecs=args.codecs.split(","),
                     modes=[m for m in args.modes.split(",") if m], seeds=[int(x) for x in args.seeds.split(",")],
                     epochs=args.epochs, patience=args.patience, batch_size=args.batch_size,
                     bbc_batch_size=args.bbc_batch_size, upper_lr=args.upper_lr, adapter_lr=args.adapter_lr,
                     full_lr=args.full_lr, rt_sizes=sizes["rt"], bbc_sizes=sizes["bbc"],
                     rt_max_length=args.rt_max_length, bbc_max_length=args.bbc_max_length,
                     baseline=not args.no_baseline, work=Path(args.work), tag=args.tag, test_decile=args.test_decile,
                     timing=args.timing, rounds=args.rounds)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="minilm", help="comma-separated built-in models (split at L // 2)")
    p.add_argument("--datasets", default="rt,bbc")
    p.add_argument("--codecs", default="fp32,int8z,int4z")
    p.add_argument("--modes", default="upper,adapter",
                   help="recycled modes: upper, head, adapter (LoRA r=16), adapter-rN[aM] (LoRA rank N, alpha M or "
                        "2N), adapter-ia3, a LoRA cell + -dora (DoRA), and any adapter + -ln (its LayerNorms train); "
                        "\"\" runs the baselines only")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--upper-lr", type=float, default=1e-4)
    p.add_argument("--adapter-lr", type=float, default=1e-3)
    p.add_argument("--full-lr", type=float, default=1e-4)
    p.add_argument("--bbc-batch-size", type=int, default=16)
    p.add_argument("--rt-sizes", default="1000,200,600", help="train,validation,test documents of Rotten Tomatoes")
    p.add_argument("--bbc-sizes", default="200,60,239", help="train,validation,test documents of BBC")
    p.add_argument("--rt-max-length", type=int, default=128)
    p.add_argument("--bbc-max-length", type=int, default=128)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: steady timings on a shared 2-core machine)")
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--work", default="runs/train")
    p.add_argument("--table-only", action="store_true")
    p.add_argument("--tags", default=None, help="comma-separated tags: the table shows only these configurations")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown with the 1-point verdict")
    p.add_argument("--against", metavar="CODEC", default=None,
                   help="pair each cell with the same mode and seed trained from CODEC's cache (e.g. int4z) instead "
                        "of the full fine-tune: the table's baseline columns are that cache's")
    merging = p.add_mutually_exclusive_group()
    merging.add_argument("--select", dest="merge", action="store_const", const="validation",
                   help="merge --tags into one configuration: per cell and seed, the run with the best validation accuracy")
    merging.add_argument("--overlay", dest="merge", action="store_const", const="order",
                   help="merge --tags into one configuration: per cell and seed, the run of the first tag listed that has it")
    p.add_argument("--tag", default="", help="label of this configuration (e.g. the learning rates) in results and table")
    p.add_argument("--test-decile", type=int, default=None,
                   help="a second test sample: hash decile D (0-7; 9 is the default split) of the train and test "
                        "documents is the test split, the rest train")
    p.add_argument("--timing", type=int, default=None, help="measure epoch times only, on the first N training docs")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds of --timing (default: 2)")
    p.add_argument("--results", metavar="FILE.md", default=None,
                   help="also write the table as a results page (e.g. docs/results/training.md): the command, the "
                        "machine, the Markdown table")
    args = p.parse_args(argv)
    try:  # an unknown mode or decile fails before anything is written, encoded or trained
        grid = _grid(args)
    except (InputError, ValueError) as e:
        p.error(str(e))
    if args.timing or not args.table_only:
        import torch
        import transformers

        transformers.logging.set_verbosity_error()
        torch.set_num_threads(args.threads)
    try:
        if args.timing:
            run_timing(grid, _log, threads=args.threads)
        elif not args.table_only:
            run_grid(grid, _log)
    except ErpackError as e:
        print(f"train_table: error: {e}", file=sys.stderr)
        return 2
    rows = load_results(grid.work / RESULTS)
    tags = None if args.tags is None else args.tags.split(",")
    result = {"rows": grid_table(rows, tags, args.merge, args.against), "timing": timing_table(rows), "machine": describe_machine()}
    print("\n".join((_markdown_lines if args.markdown else _text_lines)(result["rows"]) + _decile_lines(result["rows"])
                    + _timing_lines(result["timing"])))
    if args.results:
        _page(args.results, result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
