"""Token tasks (truecasing, punctuation restoration) trained from the cache against the full fine-tune:
the runs, one result file per (model, task), and the results page (tools/token_table.py).

    grid = token_grid("minilm", ["truecase"], work="runs/tokens", sizes=(150, 30, 100))
    results = run_token_table(grid, command="python tools/token_table.py ...", log=print)
    write_results("docs/results/tokens", results)           # MODEL-kK-TASK.json each
    text = page_text(read_results("docs/results/tokens"))   # docs/results/token-tasks.md

The runs are the training grid's (erpack.experiments.training: the same corpus, seed, batches, epochs
and head for the full fine-tune and every mode trained from the cache, resumable from WORK/results.jsonl)
over the token tasks of erpack.token_tasks; the cells are its table's rows (grid_table), scored by
micro F1 over the words (the labels other than O), with the epoch-time ratio (cache / full fine-tune).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from erpack.errors import InputError
from erpack.experiments.corpora import TOKEN_DATASETS
from erpack.experiments.grid import RESULTS, load_results
from erpack.experiments.page import machine_line
from erpack.experiments.training import TrainGrid, grid_table, run_grid, run_timing, timing_table
from erpack.store.atomic import write_atomic

TITLE = "Token tasks from the cache against the full fine-tune"
METRIC = "micro_f1"


def token_grid(model: str, tasks: list[str], work, sizes: tuple[int, int, int] = (150, 30, 100),
               modes: tuple[str, ...] = ("upper", "adapter"), seeds: tuple[int, ...] = (0, 1, 2),
               codec: str = "int8z", **settings) -> TrainGrid:
    """The training grid of `model` over token `tasks`; `settings` are TrainGrid fields (layer: the split,
    None for L // 2; epochs, token_max_length, token_batch_size, upper_lr, adapter_lr, full_lr, ...)."""
    unknown = [t for t in tasks if t not in TOKEN_DATASETS]
    if unknown:
        raise InputError(f"unknown token task(s) {', '.join(unknown)}; tasks: {', '.join(TOKEN_DATASETS)}")
    return TrainGrid(models=[model], datasets=list(tasks), codecs=[codec], modes=list(modes), seeds=list(seeds),
                     token_sizes=tuple(sizes), work=Path(work), **settings)


def _settings(grid: TrainGrid) -> dict:
    """What a result was measured with (the grid's fields that shape a token run)."""
    keep = ("layer", "codecs", "modes", "seeds", "epochs", "patience", "upper_lr", "adapter_lr", "full_lr", "token_sizes",
            "token_max_length", "token_batch_size")
    d = asdict(grid)
    return {k: d[k] for k in keep}


def settings_of(grid: TrainGrid) -> dict:
    """What a token run is measured with (kept beside its command: a later --table-only reports these)."""
    return _settings(grid)


def run_token_table(grid: TrainGrid, command: str, machine: dict, log=lambda row: None, run: bool = True,
                    settings: dict | None = None, timing: dict | None = None, threads: int = 1) -> list[dict]:
    """Run what the grid lacks (unless not `run`; with grid.timing, interleaved epoch-time rounds instead,
    erpack.experiments.training.run_timing), then one result per (model, task): the settings (those the runs
    were measured with: `settings`, else the grid's), the command and machine, the table's rows of that task
    (grid_table over WORK/results.jsonl) and, when WORK holds timing rounds, their medians (`timing`: the
    command and machine that measured them, from `timing`, and timing_table's rows)."""
    if run:
        if grid.timing:
            run_timing(grid, log, threads=threads)
        else:
            run_grid(grid, log)
    rows = [r for r in load_results(grid.work / RESULTS) if r["dataset"] in grid.datasets and r["model"] in grid.models
            and (r["kind"] not in ("recycled", "timing") or r["layer"] == grid.layer_of(r["model"]))]
    table = grid_table(rows)
    rounds = timing_table(rows)
    out = []
    for ds in grid.datasets:
        cells = [r for r in table if r["dataset"] == ds]
        if not cells:
            continue
        out.append({"model": cells[0]["model"], "layer": cells[0]["layer"], "task": ds, "labels": TOKEN_DATASETS[ds],
                    "metric": METRIC, "command": command, "machine": machine,
                    "settings": settings or _settings(grid),
                    "rows": cells, **_timing(timing, [t for t in rounds if t["dataset"] == ds])})
    return out


def _timing(provenance: dict | None, rows: list[dict]) -> dict:
    """A result's `timing`: what measured the interleaved rounds and their medians, or nothing without rounds."""
    if not rows:
        return {}
    return {"timing": {**(provenance or {}), "rows": rows}}


def timing_lines(result: dict) -> list[str]:
    """The interleaved epoch-time rounds of a result as text lines (none without them)."""
    t = result.get("timing")
    if not t:
        return []
    first = t["rows"][0]
    made = f" Made by `{t['command']}` on {machine_line(t['machine'])}." if t.get("command") else ""
    parts = [f"{r['what']} {r['seconds']:.1f} s (ratio {r['ratio']:.2f})" for r in t["rows"]]
    return [f"Epoch times only (no evaluation), in {first['rounds']} interleaved round(s) on the first {first['documents']} "
            f"training articles ({first['tokens']} tokens), median seconds per epoch: full fine-tune "
            f"{first['full_seconds']:.1f} s; " + "; ".join(parts) + "." + made, ""]


def result_name(result: dict) -> str:
    return f"{result['model']}-k{result['layer']}-{result['task']}.json"


def write_results(folder, results: list[dict]) -> list[Path]:
    """Each result as FOLDER/MODEL-kK-TASK.json (replacing the one of an earlier run of that model and task)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for res in results:
        path = folder / result_name(res)
        write_atomic(path, (json.dumps(res, indent=1) + "\n").encode())
        paths.append(path)
    return paths


def read_results(folder) -> list[dict]:
    """The result files of FOLDER, in name order."""
    return [json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json"))]


def _pct(mean, sd) -> str:
    return "-" if mean is None else f"{100 * mean:.2f} ± {100 * sd:.2f}"


def _delta(row: dict) -> str:
    if row["delta_points_mean"] is None:
        return "-"
    return f"{row['delta_points_mean']:+.2f} ({row['delta_points_min']:+.2f}..{row['delta_points_max']:+.2f})"


def table_lines(result: dict) -> list[str]:
    """The Markdown table of one result: a row per mode against the full fine-tune."""
    m = result["metric"]
    lines = ["| model, k | task | cache | mode | seeds | test micro F1 (mean ± sd) | full fine-tune | Δ points "
             "(min..max) | within 1 point | s/epoch | full s/epoch | epoch-time ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        ok = {True: "yes", False: "**no**", None: "-"}[r["within_1_point"]]
        if not r[f"baseline_{m}_mean"]:  # a full fine-tune that learned nothing is no reference
            ok = "- (full fine-tune F1 0)"
        ratio = "-" if r["epoch_time_ratio"] is None else f"{r['epoch_time_ratio']:.2f}"
        lines.append(f"| {r['model']}, {r['layer']} | {r['dataset']} | {r['codec']} | {r['mode']} | "
                     f"{','.join(map(str, r['seeds']))} | {_pct(r[f'test_{m}_mean'], r[f'test_{m}_sd'])} | "
                     f"{_pct(r[f'baseline_{m}_mean'], r[f'baseline_{m}_sd'])} | {_delta(r)} | {ok} | "
                     f"{r['seconds_per_epoch']:.1f} | {r['baseline_seconds_per_epoch']:.1f} | {ratio} |")
    return lines


def _order(res: dict) -> tuple:
    """Results by model, task, split layer, training size and epochs."""
    s = res["settings"]
    return res["model"], res["task"], res["layer"], s["token_sizes"][0], s["epochs"]


def _title(res: dict) -> str:
    s = res["settings"]
    return (f"{res['model']} k = {res['layer']}, {res['labels']}, {s['token_sizes'][0]} training articles, "
            f"{s['epochs']} epoch(s)")


def summary_lines(results: list[dict]) -> list[str]:
    """One line per mode of every result: where each (model, split, task, size, epochs) stands against its
    full fine-tune, the sections below giving the commands and machines."""
    m = METRIC
    lines = ["## Summary", "",
             "| model, k | task | training articles | epochs | mode | seeds | cache micro F1 | full fine-tune | "
             "Δ points (min..max) | within 1 point |", "|---|---|---|---|---|---|---|---|---|---|"]
    for res in sorted(results, key=_order):
        s = res["settings"]
        for r in res["rows"]:
            ok = {True: "yes", False: "**no**", None: "-"}[r["within_1_point"]] if r[f"baseline_{m}_mean"] else "-"
            lines.append(f"| {res['model']}, {res['layer']} | {res['task']} | {s['token_sizes'][0]} | {s['epochs']} | "
                         f"{r['mode']} | {len(r['seeds'])} | {_pct(r[f'test_{m}_mean'], r[f'test_{m}_sd'])} | "
                         f"{_pct(r[f'baseline_{m}_mean'], r[f'baseline_{m}_sd'])} | {_delta(r)} | {ok} |")
    return lines + [""]


def page_text(results: list[dict], render_command: str = "python tools/token_table.py --render-only") -> str:
    """docs/results/token-tasks.md from the result files: per (model, task) its command, machine, settings
    and table."""
    lines = [f"# {TITLE}", "",
             f"Rendered by `{render_command}` from the result files in "
             f"{'[tokens/](tokens/)' if results else '`tokens/`'}; each table names the "
             "command that measured it and its machine. Micro F1 is over the words' labels other than `O` "
             "(`CAP` for truecasing; `COMMA`, `PERIOD`, `QUESTION` for punctuation), on the test documents, "
             "words past max_length not scored; Δ is the cache run minus the full fine-tune of the same seed, "
             "in points; the epoch-time ratio is the mean seconds per training epoch from the cache over the "
             "full fine-tune's (same documents, batches and epochs). How the tasks are made from BBC articles: "
             "the Token tasks section of [training.md](../training.md).", ""]
    results = sorted(results, key=_order)
    if not results:
        lines.append("No results yet.")
    else:
        lines += summary_lines(results)
    for res in results:
        s = res["settings"]
        sizes = s["token_sizes"]
        lines += [f"## {_title(res)}", "",
                  f"Made by `{res['command']}`", f"on {machine_line(res['machine'])}.", "",
                  f"{sizes[0]} training, {sizes[1]} validation and {sizes[2]} test articles (the first of each "
                  f"split in sha256(id) order), max_length {s['token_max_length']}, batch "
                  f"{s['token_batch_size']}, {s['epochs']} epoch(s) (patience {s['patience']}), learning rates "
                  f"upper {s['upper_lr']:g}, adapter {s['adapter_lr']:g}, full {s['full_lr']:g}.", "",
                  *table_lines(res), "", *timing_lines(res)]
        notes = res.get("notes")
        if notes:
            lines += [f"Note: {n}" for n in notes] + [""]
    return "\n".join(lines).rstrip("\n") + "\n"
