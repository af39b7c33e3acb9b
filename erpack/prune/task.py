"""`erpack prune` as a library call: a trained task model + its cache -> a smaller task model.

    from erpack.prune import Fractions, RecoveryConfig, prune_task_model
    tm, summary = prune_task_model("models/rt", "caches/rt", "rotten_tomatoes", Fractions(0.4, 0.4),
                                   recovery=RecoveryConfig(distill=True), output="models/rt-p40")

Steps: score importance on `samples` training documents; plan (fractions, params or latency
budget); if distilling, the unpruned model's logits over the training split; cut the weights; LoRA
recovery from the cache (skipped with recovery=None); test score; save (the task model folder,
`erpack_importance.safetensors` beside it; the pruned shapes in config.json).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from erpack.errors import PruneError
from erpack.prune.importance import Importance, score_importance
from erpack.prune.plan import (
    Fractions,
    LatencyBudget,
    ParamsBudget,
    Plan,
    fraction_for_params,
    make_plan,
    upper_params,
)
from erpack.prune.recover import RecoveryConfig, recover
from erpack.runtime.device import resolve_device
from erpack.store import CacheReader
from erpack.store.atomic import check_output


def importance_batches(reader, data, samples: int, batch_size: int, device, seed: int = 0):
    """(hidden, mask, y) batches over `samples` training documents drawn with `seed`."""
    from erpack.train.data import batch_plan, cache_source

    train = data.splits["train"]
    rng = np.random.default_rng(seed)
    rows = sorted(rng.permutation(len(train))[:samples].tolist())
    ids = [train[r].id for r in rows]
    lengths = [data.lengths["train"][r] for r in rows]
    y = torch.as_tensor(data.y["train"][rows])
    source = cache_source(reader, ids, lengths)
    for batch_rows, (hidden, mask) in source.batches(batch_plan(lengths, batch_size)):
        yield hidden.to(device), mask.to(device), y[batch_rows].to(device)


def counted(batches, bar):
    """The (hidden, mask, y) batches, each counted on `bar` (documents) as it is used; the bar closed at the end."""
    try:
        for batch in batches:
            yield batch
            if bar is not None:
                bar.update(int(batch[0].shape[0]))
    finally:
        if bar is not None:
            bar.close()


def choose_plan(model, layer: int, importance: Importance, target, drop_ffn: float = 0.5) -> tuple[Plan, dict]:
    """A plan for any target; returns it with what was asked and what was chosen."""
    if isinstance(target, Fractions):
        return make_plan(importance, target, drop_ffn), {"kind": "fractions", "heads": target.heads, "ffn": target.ffn}
    if isinstance(target, ParamsBudget):
        p, plan = fraction_for_params(model, layer, importance, target, drop_ffn)
        return plan, {"kind": "params_budget", "budget": target.fraction, "fraction_chosen": p}
    if isinstance(target, LatencyBudget):
        from erpack.prune.budget import fraction_for_latency

        p, plan, ratio = fraction_for_latency(model, layer, importance, target, drop_ffn)
        return plan, {"kind": "latency_budget", "budget": target.fraction, "fraction_chosen": p,
                      "measured_ratio": ratio, "batch_size": target.batch_size, "tokens": target.tokens}
    raise PruneError(f"unknown pruning target {target!r}: use Fractions, ParamsBudget or LatencyBudget")


def _important_positions(before: dict, after: dict, importance: Importance, share: float) -> set[int]:
    """Positions, in the pruned layer list, of the most important kept upper layers."""
    kept_original = {e["index"] for e in after["layers"]}
    ranked = [before["layers"][i]["index"] for i in importance.ranked_layers()]
    ranked = [i for i in ranked if i in kept_original]
    top = set(ranked[: max(1, round(share * len(ranked)))]) if ranked else set()
    return {pos for pos, e in enumerate(after["layers"]) if e["index"] in top}


def prune_task_model(task_model, cache, labels: str, target, output=None, recovery: RecoveryConfig | None = None,
                     samples: int = 512, drop_ffn: float = 0.5, train_cfg=None, skip_missing: bool = False,
                     importance: Importance | None = None, progress: Callable | None = None,
                     overwrite: bool = False):
    """Prune a task model for its task and recover it; returns (pruned TaskModel, summary dict).

    `output` is written whole or not at all (TaskModel.save); an existing one only with overwrite.
    """
    from erpack.models.pruned import pruning_record
    from erpack.prune.structure import apply_plan
    from erpack.train.data import cache_source
    from erpack.train.loop import TrainConfig, predict, score
    from erpack.train.taskmodel import TaskModel
    from erpack.train.trainer import prepare_data

    if output is not None:  # before any work: an existing output is refused now, not after recovery
        check_output(Path(output), overwrite, "task model")
    t0 = time.perf_counter()
    tcfg = train_cfg or TrainConfig(epochs=recovery.epochs if recovery else 0, lr=recovery.lr if recovery else None)
    dev = resolve_device(tcfg.device)
    tm = task_model if isinstance(task_model, TaskModel) else TaskModel.load(task_model)
    if tm.input == "text":
        raise PruneError(f"task model {task_model} computes from text (a baseline, every layer tuned): pruning scores "
                         "and recovers from cached states, which do not feed it; prune the recycled model instead")
    tm.to(dev)
    k = tm.layer
    summary: dict = {"task_model": str(task_model) if not isinstance(task_model, TaskModel) else None,
                     "cache": str(cache), "layer": k, "task": tm.task, "output": None}
    with CacheReader(cache) as reader:
        summary["cache_notes"] = tm.check_cache(reader)
        data = prepare_data(reader, labels, tm.task, skip_missing, tcfg.train_limit, labels=tm.labels or None)
        if not data.splits["train"]:
            raise PruneError(f"no training documents in {cache} labelled by {labels}: importance needs a few")
        t1 = time.perf_counter()
        if importance is None:
            batches = importance_batches(reader, data, samples, 32, dev, tcfg.seed)
            bar = progress(total=min(samples, len(data.splits["train"])), desc="importance", unit="doc") \
                if progress else None
            importance = score_importance(tm.model, k, counted(batches, bar), tm.task)
        summary["importance_seconds"] = time.perf_counter() - t1
        plan, asked = choose_plan(tm.model, k, importance, target, drop_ffn)
        sources = {s: cache_source(reader, [e.id for e in v], data.lengths[s]) for s, v in data.splits.items()}
        teacher = None
        if recovery is not None and recovery.distill:
            teacher = predict(sources["train"], lambda x: tm.upper(*x), [tm.upper], tcfg.eval_batch_size, dev,
                              tcfg.max_tokens)
        if data.splits.get("test"):  # the unpruned model's score, to print beside the pruned one
            logits = predict(sources["test"], lambda x: tm.upper(*x), [tm.upper], tcfg.eval_batch_size, dev,
                             tcfg.max_tokens)
            summary["test_unpruned"] = score(tm.task, logits, data.y["test"], len(tm.labels))
        params_before = upper_params(tm.model, k)
        before = pruning_record(tm.model)
        model = apply_plan(copy.deepcopy(tm.model), plan)
        after = pruning_record(model)
        run = None
        if recovery is not None and tcfg.epochs > 0:
            important = _important_positions(before, after, importance, recovery.important_share)
            model, run = recover(model, k, data, reader, important, recovery, tcfg, teacher, progress)
        model.to(dev).eval()
        info = copy.deepcopy(tm.info)
        info.pop("training", None)
        info["pruning"] = {"target": asked, "plan": plan.counts(), "importance_samples": importance.samples,
                           "drop_ffn": drop_ffn, "recovery": recovery.as_dict() if recovery else None,
                           "source": summary["task_model"]}
        pruned = TaskModel(model, info)
        summary.update(target=asked, plan=plan.as_dict(), params_before=params_before,
                       params_after=upper_params(model, k), recovery=run.as_dict() if run else None)
        if data.splits.get("test"):
            test = sources["test"]
            logits = predict(test, lambda x: pruned.upper(*x), [pruned.upper], tcfg.eval_batch_size, dev,
                             tcfg.max_tokens)
            summary["test"] = score(tm.task, logits, data.y["test"], len(tm.labels))
    summary["seconds"] = time.perf_counter() - t0
    if output is not None:
        pruned.info["pruning"]["summary"] = {k2: summary[k2] for k2 in ("params_before", "params_after", "test",
                                                                                      "test_unpruned")
                                             if k2 in summary}
        pruned.save(output, overwrite, extra=importance.save)
        summary["output"] = str(output)
    return pruned, summary
