"""`erpack eval` as a library call: a saved task model over one split of a cache, scored and predicted.

The task model refuses a cache from another encoder or layer (TaskModel.check_cache); a codec or
max_length different from the training cache's is allowed and reported in `notes`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from erpack.errors import InputError
from erpack.runtime.device import resolve_device
from erpack.store import CacheReader
from erpack.store.atomic import write_atomic
from erpack.tasks import TOKEN_TASK
from erpack.train.data import batch_plan, cache_source
from erpack.train.word_labels import words_of
from erpack.train.word_targets import WordTargets


@dataclass
class EvalSummary:
    """What `evaluate` scored: a task model on one split of a cache. `as_dict()` is `erpack eval --json`."""

    task_model: str | None  # the folder, None when given a loaded TaskModel
    cache: str
    split: str
    task: str  # classification, pair-classification or regression
    mode: str
    documents: int
    skipped_missing: int  # labelled ids of the split the cache does not hold (--skip-missing)
    metrics: dict  # accuracy, macro_f1 (classification) or pearson, mse (regression), ...
    notes: list[str]
    predictions: str | None  # the predictions file written, if asked
    seconds: float
    device: str
    mean_layers: float | None = None  # upper layers run per document (early exit: mean over the documents)
    mean_layers_fraction: float | None = None  # mean_layers / (L - k)
    early_exit: dict | None = None  # the rule and threshold used (None: every layer ran)
    steps: int | None = None  # --steps: the ODE steps the shared block ran (erpack.depth.ode)

    def as_dict(self) -> dict:
        return asdict(self)


def evaluate(task_model, cache, labels: str, split: str = "test", predictions=None, skip_missing: bool = False,
             batch_size: int = 64, device: str = "auto", progress: Callable | None = None,
             shard_cache=None, early_exit: bool = True, exit_threshold: float | None = None,
             steps: int | None = None) -> EvalSummary:
    """Metrics of `task_model` (a TaskModel or its folder) on `split`; writes predictions JSONL if asked.

    Each prediction line: {"id", "label", "predicted", "probabilities": {label: p}} for classification,
    {"id", "label", "score"} for regression, {"id", "words", "labels", "predicted": [label per word]}
    for a token task; with "layers", the upper layers the document ran. A task model with exits
    (erpack.depth) stops each document where its rule says (`early_exit=False`: every layer;
    `exit_threshold`: another threshold than the recorded one). `steps`: run a shared upper stack in that
    many ODE steps (erpack.depth.ode; each line then gives "layers", the block evaluations).
    """
    from erpack.train.baseline import text_logits
    from erpack.train.loop import score
    from erpack.train.taskmodel import TaskModel
    from erpack.train.trainer import prepare_data

    dev = resolve_device(device)
    tm = task_model if isinstance(task_model, TaskModel) else TaskModel.load(task_model)
    tm.to(dev)
    exit_model = _exit_model(tm, early_exit, exit_threshold)
    upper, layers = tm.upper, None
    if steps is not None:
        from erpack.depth.ode import ode_upper

        upper = ode_upper(tm, steps).to(dev)
    t0 = time.perf_counter()
    with CacheReader(cache, shard_cache=shard_cache) as reader:  # shard_cache: local copies of remote shards
        notes = tm.check_cache(reader)
        data = prepare_data(reader, labels, tm.task, skip_missing, labels=tm.labels or None, splits=(split,),
                            subwords=tm.subwords or "first")
        examples, y = data.splits[split], data.y[split]
        if not examples:
            raise InputError(f"{labels} labels no document of the cache {cache} as {split!r}; choose another --split")
        if tm.input == "text":  # a baseline: every layer tuned, so it runs from the texts, not the records
            logits = text_logits(tm, examples, tm.expected_cache.get("max_length") or 512, batch_size, dev)
            notes.append(f"{tm.mode} model computes from text: scored on the texts of {labels} (tokenized with "
                         f"max_length {tm.expected_cache.get('max_length')}) for the documents the cache holds")
        elif exit_model is not None:
            from erpack.depth.training import run_split

            source = cache_source(reader, [e.id for e in examples], data.lengths[split], pin=dev.type == "cuda")
            plan = batch_plan(source.lengths, batch_size)
            bar = progress(total=len(plan), desc=f"eval {split}", unit="batch") if progress else None
            logits, layers = run_split(exit_model, source.batches(plan), len(examples), dev, bar)
            if bar:
                bar.close()
        else:
            logits = _cache_logits(tm, reader, examples, data.lengths[split], batch_size, dev, split, progress, upper)
    metrics = score(tm.task, logits, y, len(tm.labels))
    total = _upper_depth(tm)
    if predictions is not None:  # `layers` per line when documents may stop early
        if isinstance(y, WordTargets):
            write_word_predictions(predictions, examples, y, logits)
        else:
            write_predictions(predictions, examples, logits, tm.task, tm.labels,
                              layers if steps is None else steps)
    if layers is None:
        layers = np.full(len(examples), steps if steps is not None else total, dtype=np.int64)
    return EvalSummary(task_model=str(task_model) if not isinstance(task_model, TaskModel) else None,
                       cache=str(cache), split=split, task=tm.task, mode=tm.mode, documents=len(examples),
                       skipped_missing=len(data.missing), metrics=metrics, notes=notes,
                       predictions=str(predictions) if predictions is not None else None,
                       seconds=time.perf_counter() - t0, device=str(dev), mean_layers=float(layers.mean()),
                       mean_layers_fraction=float(layers.mean() / total) if total else None,
                       early_exit={"rule": exit_model.rule.name, "threshold": exit_model.rule.threshold}
                       if exit_model is not None else None, steps=steps)


def _exit_model(tm, early_exit: bool, threshold: float | None):
    """The task model's ExitModel when it has exits and they are wanted; an exit option on a model without
    exits is refused (InputError)."""
    has = isinstance(tm.info.get("early_exit"), dict)
    if threshold is not None and not (has and early_exit):
        raise InputError(f"--exit-threshold applies to a task model with exits, and {tm.path or 'this one'} "
                         + ("runs every layer here (--no-early-exit)" if has else
                            "has none (train it with --early-exit dact|patience|entropy)"))
    if not has or not early_exit or tm.input == "text":
        return None
    from erpack.depth.runner import ExitModel

    return ExitModel.of(tm, threshold)


def _upper_depth(tm) -> int:
    """Upper layers a plain run of the task model applies (L - k; a baseline runs all L)."""
    from erpack.models.split import depth

    return depth(tm.model) - (0 if tm.input == "text" else tm.layer)


def _cache_logits(tm, reader, examples, lengths, batch_size: int, dev, split: str, progress, upper=None) -> np.ndarray:
    """Logits (N, C) of the upper stack on the cached records of `examples` (a token task: (N, T, C))."""
    source = cache_source(reader, [e.id for e in examples], lengths, pin=dev.type == "cuda")
    plan = batch_plan(source.lengths, batch_size)
    bar = progress(total=len(plan), desc=f"eval {split}", unit="batch") if progress else None
    per_token = tm.task == TOKEN_TASK
    logits = np.zeros((len(examples), *((max(lengths, default=1),) if per_token else ()),
                       1 if tm.task == "regression" else len(tm.labels)), dtype=np.float32)
    tm.model.eval()
    upper = upper if upper is not None else tm.upper
    with torch.no_grad():
        for rows, (hidden, mask) in source.batches(plan):
            out = upper(hidden.to(dev, non_blocking=True), mask.to(dev, non_blocking=True)).float().cpu().numpy()
            if per_token:
                logits[rows, :out.shape[1]] = out
            else:
                logits[rows] = out
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    return logits


def write_word_predictions(path, examples, y: WordTargets, logits: np.ndarray) -> None:
    """A token task's predictions: a line per document, {"id", "words", "labels", "predicted"} with a
    label per word (null for a word cut off by truncation); written atomically."""
    _write_lines(path, [{"id": e.id, "words": words_of(e), "labels": list(e.label),
                       "predicted": [y.labels[p] if p >= 0 else None for p in predicted]}
                      for e, predicted in zip(examples, y.predictions(logits))])


def write_predictions(path, examples, logits: np.ndarray, task: str, labels: list[str], layers=None) -> None:
    """One JSON line per example, written atomically; with `layers` (a number, or one per example) each line
    gives the upper layers the document ran."""
    per_doc = np.broadcast_to(np.asarray(layers if layers is not None else 0), (len(examples),))
    extra = (lambda i: {}) if layers is None else (lambda i: {"layers": int(per_doc[i])})
    if task == "regression":
        rows = [{"id": e.id, "label": e.label, "score": float(row[0]), **extra(i)}
                for i, (e, row) in enumerate(zip(examples, logits))]
    else:
        z = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)  # softmax, (N, C)
        rows = [{"id": e.id, "label": e.label, "predicted": labels[int(p.argmax())],
                 "probabilities": {name: round(float(v), 6) for name, v in zip(labels, p)}, **extra(i)}
                for i, (e, p) in enumerate(zip(examples, probs))]
    _write_lines(path, rows)


def _write_lines(path, rows: list[dict]) -> None:
    """JSON lines, fsynced and renamed into place: a kill leaves the old file or the new one."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, "".join(json.dumps(row) + "\n" for row in rows).encode("utf-8"))
