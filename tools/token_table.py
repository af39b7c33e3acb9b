"""Token tasks (truecasing, punctuation restoration) trained from the cache against the full fine-tune.

    python tools/token_table.py --model minilm --tasks truecase,punctuation --seeds 0,1,2 --work runs/tokens
    python tools/token_table.py --model mpnet --tasks truecase,punctuation --seeds 0 --sizes 100,20,60 \
        --work runs/tokens-mpnet --note "one seed at a smaller size (CPU time)"
    python tools/token_table.py --model minilm --tasks truecase --timing 100 --work runs/tokens   # epoch times
    python tools/token_table.py --render-only            # docs/results/token-tasks.md from the result files
    python tools/token_table.py --render-only --check    # exit 1 when the page is not what the files render

For the model (split at --layer, by default L // 2: MiniLM k = 3, MPNet k = 6) and each task it writes a corpus of BBC
articles with a label per word (erpack.token_tasks: the first --sizes train, validation and test
articles in sha256(id) order), encodes it once (--codec), then for each seed fine-tunes the whole model
from text (the baseline) and trains every mode (--modes) from the cache with the same seed, data,
batches and epochs. Every run is appended to WORK/results.jsonl as it finishes, so an interrupted run
resumes. It prints the table (test micro F1 mean ± sd per mode, the full fine-tune, Δ in points, epoch-time
ratio), writes one result file per (model, task) into --out (docs/results/tokens/MODEL-kK-TASK.json),
and renders docs/results/token-tasks.md from every result file there. The last line is the results as JSON.

The default sizes take about ten minutes for MiniLM on two idle cores (both tasks, three seeds, upper,
adapter and the full fine-tune); the core is erpack.experiments.token_table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from erpack.errors import ErpackError, InputError
from erpack.experiments.page import command_line, publish
from erpack.experiments.token_table import (
    page_text,
    read_results,
    run_token_table,
    settings_of,
    table_lines,
    token_grid,
    write_results,
)
from erpack.runtime.timing import describe_machine
from erpack.store.atomic import write_atomic

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "results" / "tokens"
PAGE = ROOT / "docs" / "results" / "token-tasks.md"


def _log(row: dict) -> None:
    r = row.get("result")
    if row["kind"] == "timing":
        text = f"timing {row['model']} {row['dataset']} round {row['seed']}: " + ", ".join(
            f"{k} {v:.1f} s" for k, v in row["seconds"].items() if not k.endswith(" wait"))
    elif row["kind"] == "encode":
        text = f"encoded {row['model']} {row['dataset']} {row['codec']}: {row['seconds']:.1f} s, {row['bytes'] / 1e6:.1f} MB"
    else:
        what = "full fine-tune" if row["kind"] == "baseline" else row["mode"]
        text = (f"{what} {row['model']} {row['dataset']} seed {row['seed']}: test micro F1 "
                f"{r['test'][row['metric']]:.4f}, {r['train_seconds_per_epoch']:.1f} s/epoch")
    print(text, flush=True)


def _ints(text: str, n: int | None, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise InputError(f"{flag} takes comma-separated integers, got {text!r}") from None
    if n is not None and len(values) != n:
        raise InputError(f"{flag} takes {n} comma-separated integers, got {text!r}")
    return values


def _kept_name(what: str, grid) -> str:
    """WORK's file of a run's command: one per split layer, so runs of two splits sharing WORK keep their own
    (`command.json` at the default L // 2, `command-k2.json` with --layer 2)."""
    return f"{what}.json" if grid.layer is None else f"{what}-k{grid.layer}.json"


def _provenance(grid, table_only: bool) -> dict:
    """The command that measured WORK's runs, its machine and settings: this one's (kept in
    WORK/command.json, or command-kK.json with --layer K), or, with --table-only, those kept there (so a table-only run reports what was
    measured, whatever its own flags)."""
    path = Path(grid.work) / _kept_name("command", grid)
    if table_only:
        if not path.exists():
            raise InputError(f"{path} is missing: no token_table run measured in {grid.work}")
        return json.loads(path.read_text())
    kept = {"command": command_line(), "machine": describe_machine(), "settings": settings_of(grid)}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(kept).encode())
    return kept


def _timing_provenance(grid) -> dict | None:
    """With --timing (grid.timing), this command and machine (kept in WORK/timing.json, beside command.json, which
    stays the accuracy runs'; -kK with --layer K); else those kept there by an earlier --timing run, if any."""
    path = Path(grid.work) / _kept_name("timing", grid)
    if grid.timing:
        kept = {"command": command_line(), "machine": describe_machine()}
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(kept).encode())
        return kept
    return json.loads(path.read_text()) if path.exists() else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="minilm", help="built-in model (default: minilm)")
    p.add_argument("--layer", type=int, default=None, help="the split layer k (default: L // 2, MiniLM 3, MPNet 6); "
                   "runs of other layers may share WORK, and the full fine-tune is shared between them")
    p.add_argument("--tasks", default="truecase,punctuation", help="comma-separated token tasks (default: both)")
    p.add_argument("--modes", default="upper,adapter", help="modes trained from the cache (as tools/train_table.py)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--sizes", default="150,30,100", help="train,validation,test articles (default: 150,30,100)")
    p.add_argument("--codec", default="int8z", help="the cache's codec (default: int8z)")
    p.add_argument("--max-length", type=int, default=128, help="tokens kept per article (default: 128)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--upper-lr", type=float, default=5e-4, help="upper from the cache (default: 5e-4; the document "
                   "tasks' 1e-4 left truecasing 11 points behind: docs/results/token-tasks.md)")
    p.add_argument("--adapter-lr", type=float, default=3e-3, help="adapter (LoRA r=16) from the cache (default: 3e-3)")
    p.add_argument("--full-lr", type=float, default=1e-4, help="the full fine-tune (default: 1e-4; punctuation was "
                   "run at 3e-4)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: steady timings on a shared machine)")
    p.add_argument("--work", default="runs/tokens", help="work folder: corpora, caches, results.jsonl")
    p.add_argument("--note", action="append", default=[], help="a note printed under this run's tables (repeatable)")
    p.add_argument("--table-only", action="store_true", help="no training: the table from WORK/results.jsonl (the "
                   "runs finished so far), written as result files with the command that measured them")
    p.add_argument("--timing", type=int, default=None, metavar="N", help="epoch times only: the full fine-tune and "
                   "each mode from the cache in interleaved rounds on the first N training articles, so a busy "
                   "machine slows every contender alike; run in the WORK of the accuracy runs, whose result files "
                   "gain the medians")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds of --timing (default: 2)")
    p.add_argument("--out", default=str(OUT), help="folder of the result files (default: docs/results/tokens)")
    p.add_argument("--page", default=str(PAGE), help="the results page (default: docs/results/token-tasks.md)")
    p.add_argument("--render-only", action="store_true", help="only render the page from the result files")
    p.add_argument("--check", action="store_true", help="with --render-only: exit 1 if the page is out of date")
    args = p.parse_args(argv)
    if args.render_only:
        done = publish(args.page, page_text(read_results(args.out)), args.check,
                       "python tools/token_table.py --render-only")
        if done.message:
            print(done.message, file=sys.stderr)
        return done.rc
    try:  # a bad task, mode or size fails before anything is written, encoded or trained
        grid = token_grid(args.model, args.tasks.split(","), args.work, _ints(args.sizes, 3, "--sizes"),
                          [m for m in args.modes.split(",") if m], _ints(args.seeds, None, "--seeds"), args.codec,
                          layer=args.layer, epochs=args.epochs, patience=args.patience, upper_lr=args.upper_lr,
                          adapter_lr=args.adapter_lr, full_lr=args.full_lr, token_max_length=args.max_length,
                          token_batch_size=args.batch_size, timing=args.timing, rounds=args.rounds)
    except (InputError, ValueError) as e:
        p.error(str(e))
    if not args.table_only:
        import torch
        import transformers

        transformers.logging.set_verbosity_error()
        torch.set_num_threads(args.threads)
    try:
        timing = _timing_provenance(grid)
        kept = _provenance(grid, args.table_only or bool(args.timing))
        results = run_token_table(grid, kept["command"], kept["machine"], _log, run=not args.table_only,
                                  settings=kept.get("settings"), timing=timing, threads=args.threads)
    except ErpackError as e:
        print(f"token_table: error: {e}", file=sys.stderr)
        return 2
    for res in results:
        res["notes"] = args.note
        print("\n".join(table_lines(res)))
    if results:
        for path in write_results(args.out, results):
            print(f"wrote {path}", file=sys.stderr)
        publish(args.page, page_text(read_results(args.out)), False, "python tools/token_table.py --render-only")
        print(f"wrote {args.page}", file=sys.stderr)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
