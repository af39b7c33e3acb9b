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
from erpack.train.data import batch_plan, cache_source


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
    mean_layers: float | None = None  # upper layers run per document (ODE steps: block evaluations)
    steps: int | None = None  # --steps: the ODE steps the shared block ran (erpack.depth.ode)

    def as_dict(self) -> dict:
        return asdict(self)


def evaluate(task_model, cache, labels: str, split: str = "test", predictions=None, skip_missing: bool = False,
             batch_size: int = 64, device: str = "auto", progress: Callable | None = None,
             shard_cache=None, steps: int | None = None) -> EvalSummary:
    """Metrics of `task_model` (a TaskModel or its folder) on `split`; writes predictions JSONL if asked.

    Each prediction line: {"id", "label", "predicted", "probabilities": {label: p}} for classification,
    {"id", "label", "score"} for regression. `steps`: run a shared upper stack in that many ODE steps
    (erpack.depth.ode; each line then gives "layers", the block evaluations).
    """
    from erpack.train.baseline import text_logits
    from erpack.train.loop import score
    from erpack.train.taskmodel import TaskModel
    from erpack.train.trainer import prepare_data

    dev = resolve_device(device)
    tm = task_model if isinstance(task_model, TaskModel) else TaskModel.load(task_model)
    tm.to(dev)
    upper, layers = tm.upper, None
    if steps is not None:
        from erpack.depth.ode import ode_upper

        upper, layers = ode_upper(tm, steps).to(dev), steps
    t0 = time.perf_counter()
    with CacheReader(cache, shard_cache=shard_cache) as reader:  # shard_cache: local copies of remote shards
        notes = tm.check_cache(reader)
        data = prepare_data(reader, labels, tm.task, skip_missing, labels=tm.labels or None, splits=(split,))
        examples, y = data.splits[split], data.y[split]
        if not examples:
            raise InputError(f"{labels} labels no document of the cache {cache} as {split!r}; choose another --split")
        if tm.input == "text":  # a baseline: every layer tuned, so it runs from the texts, not the records
            logits = text_logits(tm, examples, tm.expected_cache.get("max_length") or 512, batch_size, dev)
            notes.append(f"{tm.mode} model computes from text: scored on the texts of {labels} (tokenized with "
                         f"max_length {tm.expected_cache.get('max_length')}) for the documents the cache holds")
        else:
            logits = _cache_logits(tm, reader, examples, data.lengths[split], batch_size, dev, split, progress, upper)
    metrics = score(tm.task, logits, y, len(tm.labels))
    if predictions is not None:
        write_predictions(predictions, examples, logits, tm.task, tm.labels, layers)
    return EvalSummary(task_model=str(task_model) if not isinstance(task_model, TaskModel) else None,
                       cache=str(cache), split=split, task=tm.task, mode=tm.mode, documents=len(examples),
                       skipped_missing=len(data.missing), metrics=metrics, notes=notes,
                       predictions=str(predictions) if predictions is not None else None,
                       seconds=time.perf_counter() - t0, device=str(dev),
                       mean_layers=float(layers if layers is not None else _upper_depth(tm)), steps=steps)


def _upper_depth(tm) -> int:
    """Upper layers a plain run of the task model applies (L-k; a baseline runs all L)."""
    from erpack.models.split import depth

    return depth(tm.model) - (0 if tm.input == "text" else tm.layer)


def _cache_logits(tm, reader, examples, lengths, batch_size: int, dev, split: str, progress, upper=None) -> np.ndarray:
    """Logits (N, C) of the upper stack on the cached records of `examples`."""
    source = cache_source(reader, [e.id for e in examples], lengths, pin=dev.type == "cuda")
    plan = batch_plan(source.lengths, batch_size)
    bar = progress(total=len(plan), desc=f"eval {split}", unit="batch") if progress else None
    logits = np.zeros((len(examples), 1 if tm.task == "regression" else len(tm.labels)), dtype=np.float32)
    tm.model.eval()
    upper = upper if upper is not None else tm.upper
    with torch.no_grad():
        for rows, (hidden, mask) in source.batches(plan):
            logits[rows] = upper(hidden.to(dev, non_blocking=True), mask.to(dev, non_blocking=True)).float().cpu().numpy()
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    return logits


def write_predictions(path, examples, logits: np.ndarray, task: str, labels: list[str],
                      layers: int | None = None) -> None:
    """One JSON line per example; with `layers` (ODE steps) each line also gives the layers it ran."""
    extra = {} if layers is None else {"layers": layers}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        if task == "regression":
            for e, row in zip(examples, logits):
                f.write(json.dumps({"id": e.id, "label": e.label, "score": float(row[0]), **extra}) + "\n")
            return
        z = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)  # softmax, (N, C)
        for e, p in zip(examples, probs):
            f.write(json.dumps({"id": e.id, "label": e.label, "predicted": labels[int(p.argmax())],
                                "probabilities": {name: round(float(v), 6) for name, v in zip(labels, p)},
                                **extra}) + "\n")
