"""The training grid: for each (model, data set, seed) a full fine-tune from text (the baseline) and
every (codec, mode) cell trained from the cache with the same seed, data, batches, epochs and head;
and its table, each cell paired with the baseline of its seed and test decile (tools/train_table.py).

    grid = TrainGrid(models=["minilm"], datasets=["rt"], codecs=["int8z"], modes=["upper", "adapter-r8-ln"])
    run_grid(grid, log=print)            # rows appended to WORK/results.jsonl as runs finish; resumes
    table = grid_table(load_results(grid.work / RESULTS), tags=None, merge=None)

A mode cell is `upper`, `head` or an adapter word (AdapterSpec.parse: `adapter`, `adapter-r64a32-ln`,
`adapter-ia3`, ...); the cell names the table's row.

Data sets `truecase` and `punctuation` are token tasks (erpack.token_tasks: a label per word of BBC
articles; sizes `token_sizes`, one corpus file holding the texts and the words' labels): their runs are
scored by micro F1 over the words (the row's `metric`), the table's columns named after it
(`test_micro_f1_mean`, ...), and they carry no per-document correctness, so no bootstrap interval.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from erpack.assets import check_decile
from erpack.errors import InputError
from erpack.experiments.corpora import TOKEN_DATASETS, grid_corpus
from erpack.experiments.grid import RESULTS, append_result, decile_of, ensure_cache, finished, run_key
from erpack.experiments.stats import correct_string, decile_means, mean_sd, paired_bootstrap
from erpack.experiments.tags import all_tags, keep_tags, merge_tags
from erpack.store import CacheReader
from erpack.train.modes import ADAPTER_GRAMMAR, AdapterSpec


def cell_mode(cell: str) -> tuple[str, AdapterSpec | None]:
    """(erpack mode, AdapterSpec or None) of a mode cell: `upper`, `head`, or an adapter word."""
    if cell in ("upper", "head"):
        return cell, None
    try:
        return "adapter", AdapterSpec.parse(cell)
    except InputError as e:
        why = "" if "unknown adapter" in str(e) else f" ({e})"
        raise InputError(f"unknown mode {cell!r}{why}; modes: upper, head, {ADAPTER_GRAMMAR}") from None


@dataclass
class TrainGrid:
    """What a training grid runs: models x data sets x seeds, one baseline each, codecs x mode cells."""

    models: list[str] = field(default_factory=lambda: ["minilm"])  # split at `layer`
    layer: int | None = None  # the split layer k of every model (None: L // 2)
    datasets: list[str] = field(default_factory=lambda: ["rt", "bbc"])
    codecs: list[str] = field(default_factory=lambda: ["fp32", "int8z", "int4z"])
    modes: list[str] = field(default_factory=lambda: ["upper", "adapter"])  # [] runs the baselines only
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    epochs: int = 2
    patience: int = 2
    batch_size: int = 32
    bbc_batch_size: int = 16
    upper_lr: float = 1e-4
    adapter_lr: float = 1e-3
    full_lr: float = 1e-4
    rt_sizes: tuple[int, int, int] = (1000, 200, 600)  # train, validation, test documents
    bbc_sizes: tuple[int, int, int] = (200, 60, 239)
    rt_max_length: int = 128
    bbc_max_length: int = 128
    token_sizes: tuple[int, int, int] = (150, 30, 100)  # token tasks (truecase, punctuation): documents
    token_max_length: int = 128
    token_batch_size: int = 8
    baseline: bool = True
    work: Path = Path("runs/train")
    tag: str = ""  # the configuration's label in results and table
    test_decile: int | None = None  # hash decile D of train + test is the test split (None: the default split)
    timing: int | None = None  # epoch times only, on the first N training documents
    rounds: int = 2  # interleaved rounds of timing

    def __post_init__(self):
        self.work = Path(self.work)
        check_decile(self.test_decile)
        for cell in self.modes:  # an unknown mode fails before anything is written, encoded or trained
            cell_mode(cell)

    def layer_of(self, model: str) -> int:
        """The split layer of `model`: `layer`, else half its depth (L // 2)."""
        from erpack.models import load_model

        return self.layer if self.layer is not None else load_model(model).num_layers // 2

    def of(self, ds: str) -> tuple[tuple[int, int, int], int, int]:
        """(sizes, max length, batch size) of data set `ds`."""
        if ds in TOKEN_DATASETS:
            return self.token_sizes, self.token_max_length, self.token_batch_size
        if ds == "bbc":
            return self.bbc_sizes, self.bbc_max_length, self.bbc_batch_size
        return self.rt_sizes, self.rt_max_length, self.batch_size


def _caches(grid: TrainGrid, model: str, ds: str, layer: int, log) -> tuple[Path, dict[str, Path]]:
    """The corpus of (model, ds) and its cache per codec, encoding the missing ones."""
    sizes, max_length, _ = grid.of(ds)
    corpus = grid_corpus(grid.work, ds, sizes)
    caches = {}
    for codec in grid.codecs:
        caches[codec], row = ensure_cache(grid.work, corpus, model, ds, codec, layer, max_length)
        if row:
            log(row)
    return corpus, caches


def task_of(ds: str) -> str:
    """The erpack task of a grid data set: token-classification for a token task, else classification."""
    return "token-classification" if ds in TOKEN_DATASETS else "classification"


def _stub(kind: str, model: str, ds: str, codec, mode: str, grid: TrainGrid, seed: int, layer: int) -> dict:
    """What run_key needs of a run's row, before the run."""
    return {"kind": kind, "model": model, "dataset": ds, "codec": codec, "mode": mode, "seed": seed, "tag": grid.tag,
            "test_decile": grid.test_decile, "layer": layer}


def _run_row(kind: str, model: str, ds: str, codec, mode: str, grid: TrainGrid, seed: int, layer: int,
             result, data) -> dict:
    from erpack.train.metrics import primary_metric

    token = data.task == "token-classification"  # scored per word: no per-document correctness
    correct = "" if result.test_logits is None or token else correct_string(result.test_logits.argmax(axis=1),
                                                                            data.y["test"])
    return {**_stub(kind, model, ds, codec, mode, grid, seed, layer), "metric": primary_metric(data.task),
            "test_correct": correct, "result": result.as_dict()}


def _finish(grid: TrainGrid, row: dict, log) -> None:
    append_result(grid.work / RESULTS, row)
    log(row)


def _run_seed(grid: TrainGrid, model: str, ds: str, layer: int, caches: dict[str, Path], labels: str, seed: int,
              log) -> None:
    """The baseline of one seed (unless done or turned off), then every (codec, cell) not yet done."""
    from erpack.train import TrainConfig
    from erpack.train.baseline import run_baseline
    from erpack.train.trainer import prepare_data, run_recycled

    done = finished(grid.work / RESULTS)
    task = task_of(ds)
    cfg = TrainConfig(epochs=grid.epochs, batch_size=grid.of(ds)[2], seed=seed, patience=grid.patience, lr=None,
                      baseline_lr=grid.full_lr)
    if grid.baseline and run_key(_stub("baseline", model, ds, None, "full", grid, seed, layer)) not in done:
        with CacheReader(caches[grid.codecs[0]]) as first:
            data = prepare_data(first, labels, task)
            r = run_baseline(first.meta, data, cfg)
        _finish(grid, _run_row("baseline", model, ds, None, "full", grid, seed, layer, r, data), log)
    for codec, cache in caches.items():
        with CacheReader(cache) as reader:
            data = prepare_data(reader, labels, task)
            for cell in grid.modes:
                if run_key(_stub("recycled", model, ds, codec, cell, grid, seed, layer)) in finished(grid.work / RESULTS):
                    continue  # read afresh: a grid sharing the work folder may have run it meanwhile
                kind, spec = cell_mode(cell)
                lr = grid.upper_lr if kind == "upper" else grid.adapter_lr
                _, r = run_recycled(reader, data, kind, spec, replace(cfg, lr=lr))
                _finish(grid, _run_row("recycled", model, ds, codec, cell, grid, seed, layer, r, data), log)


def run_grid(grid: TrainGrid, log: Callable[[dict], None] = lambda row: None) -> None:
    """Every run of `grid` not yet in WORK/results.jsonl, each appended (and passed to `log`) as it ends."""
    grid.work.mkdir(parents=True, exist_ok=True)
    for model in grid.models:
        layer = grid.layer_of(model)
        for ds in grid.datasets:
            corpus, caches = _caches(grid, model, ds, layer, log)
            labels = corpus if grid.test_decile is None else grid_corpus(grid.work, ds, grid.of(ds)[0], grid.test_decile)
            for seed in grid.seeds:
                _run_seed(grid, model, ds, layer, caches, str(labels), seed, log)


def run_timing(grid: TrainGrid, log: Callable[[dict], None] = lambda row: None, threads: int = 1) -> None:
    """Epoch times only, interleaved (full, then each mode from each cache, for `rounds` rounds) on the first
    `timing` training documents, so slow spells of a shared machine hit every contender alike."""
    from erpack.train import TrainConfig
    from erpack.train.baseline import run_baseline
    from erpack.train.trainer import prepare_data, run_recycled

    grid.work.mkdir(parents=True, exist_ok=True)
    for model in grid.models:
        layer = grid.layer_of(model)
        for ds in grid.datasets:
            corpus, caches = _caches(grid, model, ds, layer, log)
            readers = {codec: CacheReader(cache) for codec, cache in caches.items()}
            first = next(iter(readers.values()))
            cfg = TrainConfig(epochs=1, batch_size=grid.of(ds)[2], seed=0, train_limit=grid.timing)
            data = prepare_data(first, str(corpus), task_of(ds), train_limit=grid.timing, splits=("train",))
            for rnd in range(grid.rounds):
                times = {"full": run_baseline(first.meta, data, cfg).train_seconds_per_epoch}
                for codec, reader in readers.items():
                    for cell in grid.modes:
                        _, rr = run_recycled(reader, data, *cell_mode(cell), cfg)
                        times[f"{cell} {codec}"] = rr.train_seconds_per_epoch
                        times[f"{cell} {codec} wait"] = sum(e["wait_seconds"] for e in rr.epochs)
                row = {"kind": "timing", "model": model, "dataset": ds, "codec": None, "mode": None, "seed": rnd,
                       "layer": layer, "documents": len(data.splits["train"]),
                       "tokens": int(sum(data.lengths["train"])), "threads": threads, "seconds": times}
                _finish(grid, row, log)
            for reader in readers.values():
                reader.close()


def _cell_row(tag, model, ds, codec, mode, layer, rs: list[dict], brows: dict, enc: dict) -> dict:
    """The table row of one cell: its runs `rs` against the baselines `brows` by (seed, decile), on the runs'
    metric (accuracy; micro F1 for a token task): columns test_METRIC_mean/sd, baseline_METRIC_mean/sd."""
    metric = rs[0].get("metric", "accuracy")
    b = {key: x["result"] for key, x in brows.items()}
    keys = sorted((r["seed"], decile_of(r)) for r in rs)
    acc = [r["result"]["test"][metric] for r in rs]
    bacc = [b[key]["test"][metric] for key in keys if key in b]
    t = float(np.mean([r["result"]["train_seconds_per_epoch"] for r in rs]))
    bt = float(np.mean([b[key]["train_seconds_per_epoch"] for key in keys if key in b])) if bacc else float("nan")
    matched = [(r, brows[(r["seed"], decile_of(r))]) for r in rs if (r["seed"], decile_of(r)) in b]
    paired = [r["result"]["test"][metric] - x["result"]["test"][metric] for r, x in matched]
    by_decile, decile_mean = decile_means([(decile_of(r), 100 * d) for (r, _), d in zip(matched, paired)])
    ci = (paired_bootstrap([(decile_of(r), r["test_correct"], x["test_correct"]) for r, x in matched])
          if matched and all(r.get("test_correct") and x.get("test_correct") for r, x in matched) else None)
    e = enc.get((model, ds, codec, layer), {})
    saving = bt - t
    test_mean, test_sd = mean_sd(acc)
    base_mean, base_sd = mean_sd(bacc) if bacc else (None, None)
    return {"tag": tag, "lr": sorted({r["result"]["lr"] for r in rs}), "baseline_lr": sorted({x["lr"] for x in b.values()}),
            "model": model, "dataset": ds, "layer": layer, "codec": codec, "mode": mode, "metric": metric,
            "seeds": [s for s, _ in keys], "test_deciles": sorted({d for _, d in keys}),
            f"test_{metric}_mean": test_mean, f"test_{metric}_sd": test_sd,
            f"baseline_{metric}_mean": base_mean, f"baseline_{metric}_sd": base_sd,
            "delta_points_mean": 100 * float(np.mean(paired)) if paired else None,
            "delta_points_min": 100 * float(np.min(paired)) if paired else None,
            "delta_points_max": 100 * float(np.max(paired)) if paired else None,
            "delta_points_ci95": list(ci) if ci else None,
            # mean Δ of each test decile, and their mean (each decile one sample, whatever its seeds)
            "delta_points_by_decile": by_decile, "delta_points_decile_mean": decile_mean,
            "within_1_point": bool(100 * np.mean(paired) >= -1.0) if paired else None,
            "seconds_per_epoch": t, "baseline_seconds_per_epoch": bt,
            "epoch_time_ratio": t / bt if bacc else None,
            "encode_seconds": e.get("seconds"), "cache_bytes": e.get("bytes"),
            "break_even_epochs": e.get("seconds", float("nan")) / saving if saving > 0 else float("inf")}


def grid_table(rows: list[dict], tags: list[str] | None = None, merge: str | None = None,
               against: str | None = None) -> list[dict]:
    """Rows of (tag, model, data set, codec, mode): test accuracy over seeds against the baseline of the
    same tag, seed and decile, the paired difference in points (mean, min, max, bootstrap interval, by
    decile), epoch times, encoding cost. `tags` keeps only those configurations; `merge` ("validation"
    or "order") makes them one (erpack.experiments.tags.merge_tags). `against` a codec: each cell is
    paired with the cell of that codec (same tag, model, data set, mode, seed and decile) instead of
    the full fine-tune, and that codec's own cells are left out."""
    if tags is not None:
        rows = keep_tags(rows, tags)
    if merge:
        rows = merge_tags(rows, tags or all_tags(rows), by=merge)
    base: dict = {}
    for r in rows:
        if r["kind"] == "baseline":
            base.setdefault((r["model"], r["dataset"], r.get("tag", "")), {})[(r["seed"], decile_of(r))] = r
    enc = {(r["model"], r["dataset"], r["codec"], r["layer"]): r for r in rows if r["kind"] == "encode"}
    groups: dict = {}
    for r in rows:
        if r["kind"] == "recycled":
            groups.setdefault((r.get("tag", ""), r["model"], r["dataset"], r["codec"], r["mode"], r["layer"]), []).append(r)
    if against is not None:
        return [{**_cell_row(tag, model, ds, codec, mode, layer, rs,
                             {(r["seed"], decile_of(r)): r for r in groups.get((tag, model, ds, against, mode, layer), [])},
                             enc), "against": against}
                for (tag, model, ds, codec, mode, layer), rs in sorted(groups.items()) if codec != against]
    return [_cell_row(tag, model, ds, codec, mode, layer, rs, base.get((model, ds, tag), {}), enc)
            for (tag, model, ds, codec, mode, layer), rs in sorted(groups.items())]


def timing_table(rows: list[dict]) -> list[dict]:
    """Per (model, data set) and contender: median epoch seconds over the interleaved rounds, the ratio
    to the full fine-tune's median, and the median time the model waited on the cache."""
    groups: dict = {}
    for r in rows:
        if r["kind"] == "timing":
            groups.setdefault((r["model"], r["dataset"], r["layer"], r["documents"], r["tokens"]), []).append(r["seconds"])
    out = []
    for (model, ds, layer, docs, tokens), rounds in sorted(groups.items()):
        full = float(np.median([x["full"] for x in rounds]))
        for key in rounds[0]:
            if key == "full" or key.endswith(" wait"):
                continue
            t = float(np.median([x[key] for x in rounds]))
            w = float(np.median([x.get(key + " wait", 0.0) for x in rounds]))
            out.append({"model": model, "dataset": ds, "layer": layer, "documents": docs, "tokens": tokens,
                        "what": key, "seconds": t, "full_seconds": full, "ratio": t / full, "wait_seconds": w,
                        "rounds": len(rounds)})
    return out
