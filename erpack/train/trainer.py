"""`erpack train` as a library call: labels + cache -> a trained TaskModel (and, optionally, a baseline).

    from erpack.train import train_from_cache, TrainConfig
    summary = train_from_cache("caches/rt", "rotten_tomatoes", mode="adapter", output="models/rt",
                               config=TrainConfig(epochs=3, seed=0), baseline=True)
    summary.recycled.test, summary.comparison, summary.as_dict()   # TrainSummary; as_dict: `erpack train --json`

Lower-level steps, for tools that reuse one baseline across several caches: `prepare_data`,
`run_recycled`, `run_baseline` (erpack.train.baseline).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from erpack.errors import InputError
from erpack.runtime.device import resolve_device
from erpack.store import CacheReader
from erpack.store.atomic import check_output
from erpack.tasks import TOKEN_TASK
from erpack.train.baseline import BASELINE_FOLDER, run_baseline_model
from erpack.train.data import batch_plan, cache_lengths, cache_source
from erpack.train.labels import Example, in_cache, label_names, read_labels, train_subset
from erpack.train.loop import RunResult, TrainConfig, fit, predict, score
from erpack.train.metrics import primary_metric
from erpack.train.modes import AdapterSpec, load_for_cache, prepare
from erpack.train.word_labels import read_word_labels
from erpack.train.word_targets import cache_tokenizer, word_targets
from erpack.words import SUBWORDS


@dataclass
class TaskData:
    """Labelled examples per split (those the cache holds), their targets and cached token counts."""

    task: str
    source: str
    labels: list[str]
    splits: dict[str, list[Example]]
    y: dict[str, np.ndarray]  # a token task: WordTargets per split (erpack.train.word_targets)
    lengths: dict[str, list[int]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    subwords: str | None = None  # a token task: which subwords carry a word's label (first, all)

    def counts(self) -> dict:
        return {s: len(v) for s, v in self.splits.items()}


def targets(examples: list[Example], task: str, labels: list[str]) -> np.ndarray:
    if task == "regression":
        return np.array([e.label for e in examples], dtype=np.float32)
    index = {name: i for i, name in enumerate(labels)}
    for e in examples:
        if e.label not in index:
            raise InputError(f"{e.where}: label {e.label!r} is not one the task model knows ({', '.join(labels)})")
    return np.array([index[e.label] for e in examples], dtype=np.int64)


def prepare_data(reader, source: str, task: str = "classification", skip_missing: bool = False,
                 train_limit: int | None = None, labels: list[str] | None = None,
                 splits: tuple[str, ...] = ("train", "validation", "test"), subwords: str = "first",
                 model_override: str | None = None, seed: int = 0) -> TaskData:
    """Read the label source, keep the documents the cache holds (or refuse), split, and index labels.
    `train_limit` N: the N training documents `train_subset` picks with `seed` (a seeded hash of the ids).
    A token task's words are aligned with the cached tokens (erpack.train.word_targets; the encoder's
    tokenizer found as the cache recorded it, or at `model_override`)."""
    if task == TOKEN_TASK and subwords not in SUBWORDS:
        raise InputError(f"--subwords {subwords!r}: use one of {', '.join(SUBWORDS)}")
    rows = read_word_labels(source) if task == TOKEN_TASK else read_labels(source, task)
    names = labels if labels is not None else label_names(rows, task)
    if task != "regression" and labels is None and len(names) < 2:
        raise InputError(f"label source {source} has {len(names)} distinct label(s); classification needs two or more")
    kept, missing = in_cache(rows, reader, source, skip_missing)
    by_split = {s: [r for r in kept if r.split == s] for s in splits}
    if "train" in by_split and train_limit is not None:
        by_split["train"] = train_subset(by_split["train"], train_limit, seed)
    if task == TOKEN_TASK:
        tokenizer = cache_tokenizer(reader.meta["model"], model_override)
        y = {s: word_targets(reader, v, names, tokenizer, subwords) for s, v in by_split.items()}
    else:
        y = {s: targets(v, task, names) for s, v in by_split.items()}
    data = TaskData(task, source, names, by_split, y, missing=missing,
                    subwords=subwords if task == TOKEN_TASK else None)
    data.lengths = {s: cache_lengths(reader, [e.id for e in v]) for s, v in by_split.items()}
    return data


def torch_seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def init_model(path, reader, task: str | None, mode: str, early_exit, baseline: bool, shared_block):
    """The task model `erpack train --init PATH` starts from, loaded and checked against the run (InputError:
    exit 2): same cache (check_cache), a model that runs from cached states, without exits or ODE steps."""
    from erpack.train.taskmodel import TaskModel

    if baseline:
        raise InputError("--init and --baseline: the baseline fine-tunes the encoder from text, not from a task "
                         "model; train it in a run of its own")
    if shared_block is not None:
        raise InputError("--init and --shared-block: the shared block is distilled from the encoder's upper stack; "
                         "drop --init")
    if mode == "adapter":
        raise InputError("--init trains on an existing task model in --mode upper or head; adapters on it are not "
                         "supported (drop --mode adapter)")
    tm = TaskModel.load(path)
    if tm.input == "text":
        raise InputError(f"--init {path}: this task model computes from text (a baseline); give a task model trained "
                         "from this cache")
    for key, what in (("early_exit", "exits"), ("ode", "ODE steps")):
        if tm.info.get(key) is not None:
            raise InputError(f"--init {path}: this task model has {what} already; start from the model it was "
                             "trained from (without them)")
    if task is not None and task != tm.task:
        raise InputError(f"--init {path} is a {tm.task} model; --task {task} does not match (drop --task)")
    tm.check_cache(reader)  # another encoder, layer or tokenizer: ManifestMismatchError (exit 2)
    return tm


def run_recycled(reader, data: TaskData, mode: str = "upper", adapter: AdapterSpec | None = None,
                 cfg: TrainConfig | None = None, model_override: str | None = None,
                 progress: Callable | None = None, early_exit=None, init=None):
    """Train `mode` from the cache; returns (TaskModel with merged weights, RunResult with test score).
    `early_exit` (an erpack.depth.training.ExitSpec): exits after each upper layer train jointly, the
    rule's threshold is chosen on validation, and the record gains `early_exit` (erpack.depth).
    `init` (a TaskModel from this cache, checked by `init_model`): training starts from its weights and
    shapes (a pruned model stays pruned) instead of a fresh head on the encoder; in head mode with exits
    its weights stay frozen and only the exits train."""
    from erpack.models import split_model
    from erpack.train.taskmodel import TaskModel, expected_cache_of

    cfg = cfg or TrainConfig()
    if not data.splits.get("train"):
        raise InputError(f"no training documents: {data.source} labels none of the cache's documents as `train`")
    dev = resolve_device(cfg.device)
    k = reader.meta["layer"]
    if init is not None:
        torch_seed(cfg.seed)
        model = init.model
    else:
        _, model = load_for_cache(reader.meta, data.labels, data.task, cfg.seed, model_override)
    if early_exit is not None:  # refused before any training
        from erpack.depth.training import check_task
        from erpack.models.split import depth

        check_task(early_exit, data.task, depth(model) - k, len(data.labels))
    prepared = prepare(model, mode, k, adapter if mode == "adapter" else None)
    if init is not None and early_exit is not None and mode == "head":
        prepared.model.requires_grad_(False)  # the model as it was: only the exits (and DACT's halting) train
    prepared.model.to(dev)
    _, upper = split_model(prepared.model, k)
    pin = dev.type == "cuda"
    sources = {s: cache_source(reader, [e.id for e in v], data.lengths[s], cfg.prefetch, pin)
               for s, v in data.splits.items()}

    def forward(inputs):
        hidden, mask = inputs  # (B, T, H), (B, T)
        return upper(hidden, mask)  # (B, C); a token task (B, T, C)

    params_of, modules, train_loss, exits = prepared.model, [upper], None, None
    if early_exit is not None:
        from torch.nn import ModuleDict

        from erpack.depth.training import exit_lr, exit_setup

        segments, exits, forward, train_loss = exit_setup(prepared.model, k, len(data.labels), early_exit, cfg.seed,
                                                           data.task)
        params_of, modules = ModuleDict({"model": prepared.model, "exits": exits}), [segments, exits]
        early_exit = replace(early_exit, lr=exit_lr(early_exit, cfg.lr_for(mode)))  # recorded as it ran
    result = fit(task=data.task, mode=mode, lr=cfg.lr_for(mode), cfg=cfg, params_of=params_of,
                 modules=modules, forward=forward, train=sources["train"], y_train=data.y["train"],
                 validation=sources.get("validation"), y_validation=data.y.get("validation"),
                 num_classes=len(data.labels), device=dev, progress=progress, desc=mode, train_loss=train_loss,
                 lrs={"exits": early_exit.lr} if early_exit is not None else None)
    result.notes["adapter_targets"] = len(prepared.targets)
    final = prepared.finalize()
    final.eval()
    info = {
        "task": data.task, "labels": data.labels, "mode": mode, "layer": k,
        "adapter": dict((adapter or AdapterSpec()).as_dict(), targets=prepared.targets, merged=True)
        if mode == "adapter" else None,
        "cache": expected_cache_of(reader),
    }
    if data.subwords is not None:
        info["subwords"] = data.subwords
    if init is not None:  # the initial model's record (its pruning included), trained on by this run
        info = dict({key: v for key, v in init.info.items() if key not in ("training", "checksum", "files")},
                    **info, init={"path": str(init.path), "mode": init.mode})
    tm = TaskModel(final, info)
    if exits is not None:
        from erpack.depth.training import finish

        splits = {s: (len(src.lengths), lambda src=src: src.batches(batch_plan(src.lengths, cfg.eval_batch_size,
                                                                              max_tokens=cfg.max_tokens)))
                  for s, src in sources.items()}
        tm.info["early_exit"] = finish(tm, exits, early_exit, splits, data.y, dev, result, score)
        tm.writers.append(exits.save)
    elif len(data.splits.get("test", [])):
        test = sources["test"]
        logits = predict(test, lambda x: tm.upper(*x), [tm.upper], cfg.eval_batch_size, dev, cfg.max_tokens)
        result.test = score(data.task, logits, data.y["test"], len(data.labels))
        result.test_logits = logits
    return tm, result


@dataclass
class Comparison:
    """The recycled run against the baseline: test score difference (points of `metric`), ratio of epoch times."""

    metric: str
    test_delta_points: float | None
    epoch_time_ratio: float

    def as_dict(self) -> dict:
        return asdict(self)


def compare(recycled: RunResult, baseline: RunResult | None, task: str) -> Comparison | None:
    """Score and time of the recycled run against the baseline (points, ratio of epoch times)."""
    if baseline is None:
        return None
    m = primary_metric(task)
    r, b = recycled.test.get(m), baseline.test.get(m)
    return Comparison(m, (r - b) * 100 if r is not None and b is not None else None,
                      recycled.train_seconds_per_epoch / baseline.train_seconds_per_epoch)


@dataclass
class TrainSummary:
    """What `train_from_cache` did: the cache and labels it read, the runs, and where it saved them.

    `as_dict()` is `erpack train --json`; `record()` is what erpack_task.json keeps under "training"
    (the same without `cleaned`, which is only known after the folder is written).
    """

    cache: str
    codec: str  # the cache's codec spec
    model: str  # the encoder's recorded name
    layer: int
    task: str
    labels: list[str]
    source: str  # the label source
    documents: dict[str, int]  # per split
    skipped_missing: int  # labelled ids the cache lacks (with skip_missing)
    config: TrainConfig
    recycled: RunResult
    baseline: RunResult | None
    comparison: Comparison | None
    seconds: float
    output: str | None = None
    cleaned: list[str] | None = None
    subwords: str | None = None  # a token task's rule (first, all)  # with an output: what an earlier, killed write of it left and was removed

    @property
    def baseline_output(self) -> str | None:
        """OUTPUT/baseline when a baseline was saved."""
        if self.output is None or self.baseline is None:
            return None
        return str(Path(self.output) / BASELINE_FOLDER)

    def record(self) -> dict:
        d = {"cache": self.cache, "codec": self.codec, "model": self.model, "layer": self.layer, "task": self.task,
             "labels": self.labels, "source": self.source, "documents": self.documents,
             "skipped_missing": self.skipped_missing, "config": asdict(self.config),
             "recycled": self.recycled.as_dict(), "baseline": self.baseline.as_dict() if self.baseline else None,
             "comparison": self.comparison.as_dict() if self.comparison else None, "seconds": self.seconds,
             "output": self.output}
        if self.subwords is not None:
            d["subwords"] = self.subwords
        if self.baseline_output is not None:
            d["baseline_output"] = self.baseline_output
        return d

    def as_dict(self) -> dict:
        d = self.record()
        if self.cleaned is not None:
            d["cleaned"] = self.cleaned
        return d


def train_from_cache(cache, labels: str, task: str | None = "classification", mode: str = "upper",
                     adapter: AdapterSpec | None = None, output=None, config: TrainConfig | None = None,
                     baseline: bool = False, model_override: str | None = None, skip_missing: bool = False,
                     progress: Callable | None = None, overwrite: bool = False, shard_cache=None,
                     subwords: str = "first", early_exit=None,
                     shared_block=None, init=None) -> TrainSummary:
    """Train a task model from `cache` with labels from `labels`; save it to `output` when given.

    Returns a TrainSummary: data counts, the recycled run, the baseline run (if asked) and the
    comparison of the two. The saved erpack_task.json holds `summary.record()` under "training".
    `output` is written whole or not at all (TaskModel.save), the baseline as `output/baseline/`;
    an existing output is refused (before any training) unless overwrite. `shard_cache`: a local folder
    where the shards of a remote cache are downloaded once (checked against their sha256) and then read
    as local files, so every epoch after the first reads at local-disk speed. `subwords` (a token task):
    which subwords of a word carry its label, "first" or "all" (erpack.words). `shared_block` (an
    erpack.depth.distill.ShareSpec): one block shared by the upper layers, distilled from the encoder's
    upper stack, then tuned with the head (`upper` mode only); the record gains "ode". `init` (a task
    model folder trained from this cache, pruned or not): start from it instead of a fresh head (`init_model`);
    `task` None: the init model's task, else classification.
    """
    if shared_block is not None and early_exit is not None:
        raise InputError("--shared-block and --early-exit: a task model runs either ODE steps of a shared block or "
                         "exits after its layers; train one of them")
    if shared_block is not None and (mode != "upper" or baseline):
        raise InputError(f"--shared-block trains the shared block and the head (mode upper), without a baseline; "
                         f"drop --mode {mode}" + (" and --baseline" if baseline else ""))
    if output is not None:
        check_output(Path(output), overwrite, "task model")
    cfg = config or TrainConfig()
    if early_exit is not None and baseline:
        raise InputError("--early-exit and --baseline: train the baseline in a run of its own (the exits belong to "
                         "the recycled model)")
    t0 = time.perf_counter()
    with CacheReader(cache, shard_cache=shard_cache) as reader:
        start = None
        if init is not None:
            start = init_model(init, reader, task, mode, early_exit, baseline, shared_block)
            task = start.task
            if start.subwords is not None:
                subwords = start.subwords
        task = task or "classification"
        data = prepare_data(reader, labels, task, skip_missing, cfg.train_limit, subwords=subwords,
                            model_override=model_override, labels=start.labels if start is not None else None,
                            seed=cfg.seed)
        if shared_block is not None:
            from erpack.train.shared import run_shared_block

            tm, run = run_shared_block(reader, data, cfg, shared_block, model_override, progress)
        else:
            tm, run = run_recycled(reader, data, mode, adapter, cfg, model_override, progress, early_exit,
                                   start)
        base_tm, base = (run_baseline_model(reader, data, cfg, mode, model_override, progress=progress)
                         if baseline else (None, None))
        summary = TrainSummary(
            cache=str(cache), codec=reader.codec.spec, model=reader.meta["model"]["name"], layer=reader.meta["layer"],
            task=task, labels=data.labels, source=labels, documents=data.counts(), skipped_missing=len(data.missing),
            config=cfg, recycled=run, baseline=base, comparison=compare(run, base, task),
            seconds=time.perf_counter() - t0, subwords=data.subwords)
    if output is not None:
        _save(summary, output, tm, base_tm, overwrite)
    return summary


def _save(summary: TrainSummary, output, tm, base_tm, overwrite: bool) -> None:
    """Write the task model (and the baseline beside it) with the summary as its training record."""
    summary.output = str(output)
    tm.info["training"] = summary.record()
    if base_tm is not None:
        base_tm.info["training"] = tm.info["training"]
    cleaned: list[str] = []
    tm.save(output, overwrite, extra=(lambda folder: base_tm.write(folder / BASELINE_FOLDER)) if base_tm else None,
            notes=cleaned)
    summary.cleaned = cleaned  # temporary folders an earlier, killed write of the output left
