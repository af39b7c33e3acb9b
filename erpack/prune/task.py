"""`erpack prune` as a library call: a trained task model + its cache -> a smaller task model.

    from erpack.prune import Fractions, RecoveryConfig, prune_task_model
    tm, summary = prune_task_model("models/rt", "caches/rt", "rotten_tomatoes", Fractions(0.4, 0.4),
                                   recovery=RecoveryConfig(distill=True), output="models/rt-p40")
    summary.params_after, summary.test, summary.plan.counts()   # PruneSummary; as_dict: `erpack prune --json`

Steps: score importance on `samples` training documents; plan (fractions, params or latency
budget); if distilling, the unpruned model's logits over the training split; cut the weights; LoRA
recovery from the cache (skipped with recovery=None); test score; save (the task model folder,
`erpack_importance.safetensors` beside it; the pruned shapes in config.json).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from erpack.errors import PruneError
from erpack.models.pruned import pruning_record
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
from erpack.prune.structure import apply_plan
from erpack.runtime.device import resolve_device
from erpack.store import CacheReader
from erpack.store.atomic import check_output
from erpack.tasks import TOKEN_TASK
from erpack.train.data import batch_plan, cache_source
from erpack.train.loop import RunResult, TrainConfig, as_targets, predict, score
from erpack.train.taskmodel import TaskModel
from erpack.train.trainer import prepare_data


def importance_batches(reader, data, samples: int, batch_size: int, device, seed: int = 0):
    """(hidden, mask, y) batches over `samples` training documents drawn with `seed`."""
    train = data.splits["train"]
    rng = np.random.default_rng(seed)
    rows = sorted(rng.permutation(len(train))[:samples].tolist())
    ids = [train[r].id for r in rows]
    lengths = [data.lengths["train"][r] for r in rows]
    y = as_targets(data.y["train"])[rows]  # (n,) labels, or a token task's (n, T) per-token targets
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


@dataclass
class PruneSummary:
    """What `prune_task_model` did: the plan, parameters and test scores before and after, the recovery run.

    `as_dict()` is `erpack prune --json`; `record()` is what the pruned folder's erpack_task.json keeps
    under pruning.summary.
    """

    task_model: str | None  # the folder pruned (None when given a TaskModel)
    cache: str
    layer: int
    task: str
    cache_notes: list[str]  # allowed differences between the cache and the one the model expects
    importance_seconds: float
    target: dict  # what was asked and what was chosen (choose_plan)
    plan: Plan
    params_before: int  # upper-stack parameters
    params_after: int
    recovery: RunResult | None  # the LoRA recovery run (None: no recovery)
    seconds: float
    test_unpruned: dict | None = None  # test scores, when the labels have a test split
    test: dict | None = None
    output: str | None = None

    def record(self) -> dict:
        d = {"params_before": self.params_before, "params_after": self.params_after, "test": self.test,
             "test_unpruned": self.test_unpruned}
        return {k: v for k, v in d.items() if k.startswith("params") or v is not None}

    def as_dict(self) -> dict:
        d = {"task_model": self.task_model, "cache": self.cache, "layer": self.layer, "task": self.task,
             "output": self.output, "cache_notes": self.cache_notes, "importance_seconds": self.importance_seconds}
        if self.test_unpruned is not None:
            d["test_unpruned"] = self.test_unpruned
        d.update(target=self.target, plan=self.plan.as_dict(), params_before=self.params_before,
                 params_after=self.params_after, recovery=self.recovery.as_dict() if self.recovery else None)
        if self.test is not None:
            d["test"] = self.test
        d["seconds"] = self.seconds
        return d


def prune_task_model(task_model, cache, labels: str, target, output=None, recovery: RecoveryConfig | None = None,
                     samples: int = 512, drop_ffn: float = 0.5, train_cfg=None, skip_missing: bool = False,
                     importance: Importance | None = None, progress: Callable | None = None,
                     overwrite: bool = False, shard_cache=None) -> tuple[TaskModel, PruneSummary]:
    """Prune a task model for its task and recover it; returns (pruned TaskModel, PruneSummary).

    `output` is written whole or not at all (TaskModel.save); an existing one only with overwrite.
    """
    if output is not None:  # before any work: an existing output is refused now, not after recovery
        check_output(Path(output), overwrite, "task model")
    t0 = time.perf_counter()
    tcfg = train_cfg or TrainConfig(epochs=recovery.epochs if recovery else 0, lr=recovery.lr if recovery else None)
    dev = resolve_device(tcfg.device)
    tm = _prunable(task_model, dev)
    if recovery is not None and recovery.distill and tm.task == TOKEN_TASK:
        raise PruneError(f"task model {task_model} is a token task: distillation mixes one label per document with "
                         "the teacher's, which token tasks do not have; recover without --distill")
    source = str(task_model) if not isinstance(task_model, TaskModel) else None
    with CacheReader(cache, shard_cache=shard_cache) as reader:  # shard_cache: local copies of remote shards
        cache_notes = tm.check_cache(reader)
        data = prepare_data(reader, labels, tm.task, skip_missing, tcfg.train_limit, labels=tm.labels or None,
                            subwords=tm.subwords or "first", seed=tcfg.seed)
        if not data.splits["train"]:
            raise PruneError(f"no training documents in {cache} labelled by {labels}: importance needs a few")
        t1 = time.perf_counter()
        if importance is None:
            importance = _score(tm, reader, data, samples, dev, tcfg.seed, progress)
        importance_seconds = time.perf_counter() - t1
        plan, asked = choose_plan(tm.model, tm.layer, importance, target, drop_ffn)
        sources = {s: cache_source(reader, [e.id for e in v], data.lengths[s]) for s, v in data.splits.items()}
        teacher = (_logits(tm, sources["train"], tcfg, dev) if recovery is not None and recovery.distill else None)
        test_unpruned = _test_score(tm, sources, data, tcfg, dev)  # to print beside the pruned one
        params_before = upper_params(tm.model, tm.layer)
        model, run = _cut_and_recover(tm, plan, importance, data, reader, recovery, tcfg, teacher, progress)
        model.to(dev).eval()
        pruned = TaskModel(model, _pruned_info(tm, asked, plan, importance, drop_ffn, recovery, source))
        test = _test_score(pruned, sources, data, tcfg, dev)
    summary = PruneSummary(source, str(cache), tm.layer, tm.task, cache_notes, importance_seconds, asked, plan,
                           params_before, upper_params(model, tm.layer), run, time.perf_counter() - t0,
                           test_unpruned, test)
    if output is not None:
        pruned.info["pruning"]["summary"] = summary.record()
        pruned.save(output, overwrite, extra=importance.save)
        summary.output = str(output)
    return pruned, summary


def _prunable(task_model, device) -> TaskModel:
    """The task model (loaded when given a folder) on `device`; one that computes from text is refused."""
    tm = task_model if isinstance(task_model, TaskModel) else TaskModel.load(task_model)
    if tm.input == "text":
        raise PruneError(f"task model {task_model} computes from text (a baseline, every layer tuned): pruning scores "
                         "and recovers from cached states, which do not feed it; prune the recycled model instead")
    if tm.info.get("early_exit") is not None:  # the exits were trained on the unpruned layers' states
        raise PruneError(f"task model {task_model} has exits (trained with --early-exit): pruning changes the hidden "
                         "states they read and recovery does not retrain them, so erpack does not prune it; prune "
                         "the same task model trained without --early-exit, then train exits on the pruned one "
                         "(`erpack train CACHE --labels L --init PRUNED --early-exit RULE --mode head`)")
    return tm.to(device)


def _score(tm: TaskModel, reader, data, samples: int, device, seed: int, progress) -> Importance:
    """Importance of every head and neuron on `samples` training documents, counted on a bar."""
    batches = importance_batches(reader, data, samples, 32, device, seed)
    bar = progress(total=min(samples, len(data.splits["train"])), desc="importance", unit="doc") if progress else None
    return score_importance(tm.model, tm.layer, counted(batches, bar), tm.task)


def _logits(tm: TaskModel, source, tcfg, device) -> np.ndarray:
    """(N, C) logits of `tm` over a split's source, in example order."""
    return predict(source, lambda x: tm.upper(*x), [tm.upper], tcfg.eval_batch_size, device, tcfg.max_tokens)


def _test_score(tm: TaskModel, sources: dict, data, tcfg, device) -> dict | None:
    """`tm`'s scores on the test split (None when the labels have none)."""
    if not data.splits.get("test"):
        return None
    return score(tm.task, _logits(tm, sources["test"], tcfg, device), data.y["test"], len(tm.labels))


def _cut_and_recover(tm: TaskModel, plan: Plan, importance: Importance, data, reader, recovery, tcfg, teacher,
                     progress):
    """A pruned copy of `tm`'s model and, with recovery, its LoRA recovery run: (model, RunResult or None)."""
    before = pruning_record(tm.model)
    model = apply_plan(copy.deepcopy(tm.model), plan)
    if recovery is None or tcfg.epochs <= 0:
        return model, None
    important = _important_positions(before, pruning_record(model), importance, recovery.important_share)
    return recover(model, tm.layer, data, reader, important, recovery, tcfg, teacher, progress)


def _pruned_info(tm: TaskModel, asked: dict, plan: Plan, importance: Importance, drop_ffn: float, recovery,
                 source: str | None) -> dict:
    """The pruned model's record: the unpruned one's, less its training summary, plus what pruning did."""
    info = copy.deepcopy(tm.info)
    info.pop("training", None)
    info["pruning"] = {"target": asked, "plan": plan.counts(), "importance_samples": importance.samples,
                       "drop_ffn": drop_ffn, "recovery": recovery.as_dict() if recovery else None, "source": source}
    return info
