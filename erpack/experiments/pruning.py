"""Pruning levels against the unpruned task model: upper-stack parameters, latency, test accuracy
(tools/prune_table.py).

    cfg = PruneGrid(work=Path("runs/prune"), levels=[0.2, 0.4, 0.6], train_limit=3000)
    rows = run_levels(cfg, "rt", seed=0)     # appended to WORK/results.jsonl
    summary = prune_table(load_results(cfg.work / RESULTS))

Per (data set, seed): train the unpruned task model from the cache (mode upper), score importance once,
then per level p prune p of the upper stack's heads and p of its neurons and recover with LoRA
(distilling the unpruned logits). Latency is one forward pass of the upper stack on a batch of 32 test
documents around the median length, all levels timed in turns, median of `repeats` rounds.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from erpack.experiments.corpora import subset_labels
from erpack.experiments.grid import RESULTS, append_result
from erpack.experiments.stats import mean_sd
from erpack.store import CacheReader


@dataclass
class PruneGrid:
    """What a pruning run measures; caches must exist as WORK/cache-MODEL-DATASET."""

    work: Path = Path("runs/prune")
    model: str = "minilm"  # the name in the cache folder names
    levels: list[float] = field(default_factory=lambda: [0.2, 0.4, 0.6])
    train_limit: int | None = None
    validation_limit: int | None = None
    test_limit: int | None = None
    subset: str = "hash"  # which N documents the limits keep: "hash" (by sha1 of the id) or "first"
    epochs: int = 2  # of the unpruned task model
    lr: float = 1e-4  # of the unpruned task model
    recovery_epochs: int = 1
    rank: int = 8
    samples: int = 512  # training documents importance is scored on
    repeats: int = 21
    distill: bool = True

    def __post_init__(self):
        self.work = Path(self.work)


def latency_batch(reader, data, batch_size: int):
    """`batch_size` test documents around the median length, padded: (hidden (B, T, H), mask (B, T))."""
    from erpack.train.data import pad_batch

    test = data.splits["test"]
    order = sorted(range(len(test)), key=lambda i: data.lengths["test"][i])
    mid = max(0, len(order) // 2 - batch_size // 2)
    return pad_batch([reader.get(test[i].id) for i in order[mid:mid + batch_size]])


def _unpruned(cfg: PruneGrid, ds: str, seed: int, cache: Path, labels: str):
    """The unpruned task model of (ds, seed), trained unless its folder holds one, and the seconds it took."""
    from erpack.train import TaskModel, TrainConfig, train_from_cache

    folder = cfg.work / f"{cfg.model}-{ds}-s{seed}-base"
    t0 = time.perf_counter()
    if not (folder / "erpack_task.json").exists():
        train_from_cache(cache, labels, mode="upper", output=folder,
                         config=TrainConfig(epochs=cfg.epochs, seed=seed, train_limit=cfg.train_limit, lr=cfg.lr))
    return TaskModel.load(folder), time.perf_counter() - t0


def run_levels(cfg: PruneGrid, ds: str, seed: int) -> list[dict]:
    """Every level of (ds, seed) and the unpruned model (level 0), timed together, appended as rows."""
    import torch

    from erpack.prune import Fractions, RecoveryConfig, prune_task_model, upper_params
    from erpack.prune.budget import interleaved_latency
    from erpack.prune.importance import score_importance
    from erpack.prune.task import importance_batches
    from erpack.train import TrainConfig
    from erpack.train.trainer import prepare_data

    cache = cfg.work / f"cache-{cfg.model}-{ds}"
    labels = subset_labels(cfg.work, ds, {"train": cfg.train_limit, "validation": cfg.validation_limit,
                                          "test": cfg.test_limit}, cfg.subset)
    base, base_seconds = _unpruned(cfg, ds, seed, cache, labels)
    with CacheReader(cache) as reader:
        data = prepare_data(reader, labels, base.task, train_limit=cfg.train_limit, labels=base.labels, seed=seed)
        imp = score_importance(base.model, base.layer, importance_batches(reader, data, cfg.samples, 32, "cpu", seed),
                               base.task)
        hidden, mask = latency_batch(reader, data, 32)
    models = {0.0: base}
    rows = [{"dataset": ds, "seed": seed, "level": 0.0, "params": upper_params(base.model, base.layer),
             "test": base.info["training"]["recycled"]["test"], "seconds": base_seconds, "plan": None}]
    for level in cfg.levels:
        t1 = time.perf_counter()
        tm, s = prune_task_model(base, cache, labels, Fractions(level, level), importance=imp,
                                 output=cfg.work / f"{cfg.model}-{ds}-s{seed}-p{int(level * 100)}",
                                 recovery=RecoveryConfig(rank=cfg.rank, epochs=cfg.recovery_epochs, lr=1e-3,
                                                         distill=cfg.distill),
                                 train_cfg=TrainConfig(epochs=cfg.recovery_epochs, lr=1e-3, seed=seed,
                                                       train_limit=cfg.train_limit),
                                 overwrite=True)  # the tool's work folder: a rerun replaces its pruned models
        models[level] = tm
        rows.append({"dataset": ds, "seed": seed, "level": level, "params": s.params_after, "test": s.test,
                     "seconds": time.perf_counter() - t1, "plan": s.plan.as_dict() | {"layers": None}})
    times = interleaved_latency([models[lv].upper for lv in sorted(models)], hidden, mask, repeats=cfg.repeats, warmup=2)
    for row, t in zip(sorted(rows, key=lambda r: r["level"]), times):
        row.update(latency_ms=t * 1e3, latency_batch=list(hidden.shape[:2]), model=cfg.model, layer=base.layer,
                   train_limit=cfg.train_limit, validation_limit=cfg.validation_limit, test_limit=cfg.test_limit,
                   epochs=cfg.epochs, recovery_epochs=cfg.recovery_epochs, threads=torch.get_num_threads(),
                   samples=cfg.samples, lr=cfg.lr, subset=cfg.subset)
        append_result(cfg.work / RESULTS, row)
    return rows


def _level_row(model: str, ds: str, level: float, by_seed: dict, base: dict, seeds: list[int]) -> dict:
    accs = [by_seed[s]["test"]["accuracy"] for s in seeds]
    deltas = [(by_seed[s]["test"]["accuracy"] - base[s]["test"]["accuracy"]) * 100 for s in seeds]
    ratios = [by_seed[s]["latency_ms"] / base[s]["latency_ms"] for s in seeds]
    acc, sd = mean_sd(accs, ddof=1)
    params = by_seed[seeds[0]]["params"]
    return {"model": model, "dataset": ds, "level": level, "params": params,
            "params_ratio": params / base[seeds[0]]["params"],
            "latency_ms": statistics.median(by_seed[s]["latency_ms"] for s in seeds),
            "latency_ratio": statistics.median(ratios), "accuracy": acc, "accuracy_sd": sd,
            "delta_points": statistics.mean(deltas), "delta_min": min(deltas), "delta_max": max(deltas),
            "seeds": len(seeds)}


def prune_table(rows: list[dict]) -> dict:
    """{"rows": {"MODEL/DS": [one row per level]}, "verdicts": {"MODEL/DS": ...}}: per (model, data set,
    level) accuracy mean and sd over seeds, its difference to the unpruned model of the same seed (mean,
    min, max), the latency ratio to the unpruned stack taken per seed (levels of one seed are timed in the
    same interleaved rounds), median; the verdict: the largest level within 1 point and its latency."""
    groups: dict[tuple, dict[int, dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["dataset"], r["level"]), {})[r["seed"]] = r
    summary: dict = {}
    for (model, ds, level), by_seed in sorted(groups.items()):
        base = groups.get((model, ds, 0.0), {})
        seeds = sorted(s for s in by_seed if s in base)
        if seeds:
            summary.setdefault(f"{model}/{ds}", []).append(_level_row(model, ds, level, by_seed, base, seeds))
    verdicts = {}
    for key, rs in summary.items():
        ok = [r for r in rs if r["level"] > 0 and r["delta_points"] >= -1.0]
        best = max(ok, key=lambda r: r["level"]) if ok else None
        verdicts[key] = {"largest_level_within_1_point": best["level"] if best else None,
                         "latency_ratio": best["latency_ratio"] if best else None,
                         "meets_0_65": bool(best and best["latency_ratio"] <= 0.65)}
    return {"rows": summary, "verdicts": verdicts}
