"""`erpack bench` as a library call: the same documents through every inference path, timed.

    result = run_bench(BenchConfig(corpus="rotten_tomatoes", model="minilm", layer=3,
                                   codecs=["int8+zstd:3"], limit=512, repeats=5))  # a BenchResult

Steps: read the documents of one split (the test split by default, erpack.bench.documents) and
their labels where the corpus has them; load the task model (or a randomly initialised head: then
accuracy is n/a and paths are compared by agreement with the full model); build missing caches with erpack.encode into the work folder; prepare every path; one
warm-up pass each; then `repeats` timed passes, interleaved (A, B, C, A, B, C, ...) so load from
other processes hurts every path alike; report medians, spread and the per-section breakdown.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from erpack.assets import resolve_model
from erpack.batching import length_batches
from erpack.bench.card import scored_documents
from erpack.bench.documents import BenchDocuments, read_documents
from erpack.bench.pathnames import PATHS
from erpack.bench.paths import (
    ErpackExitInt8,
    ErpackOdeInt8,
    ErpackOnnx,
    ErpackPrunedInt8,
    ErpackTorch,
    FullOnnxInt8,
    FullTorch,
    Workload,
    prune_by_importance,
    quantization_note,
)
from erpack.bench.result import BenchResult, path_result, true_classes, with_speedups
from erpack.bench.training import bench_training
from erpack.encode import default_max_length, encode_corpus
from erpack.errors import ErpackError, InputError
from erpack.runtime.device import resolve_device
from erpack.runtime.progress import Steps
from erpack.runtime.timing import describe_machine
from erpack.store.location import is_url, open_location
from erpack.train.taskfolder import read_task_file


@dataclass
class BenchConfig:
    corpus: str
    model: str = "minilm"
    layer: int | None = None
    codecs: list[str] = field(default_factory=list)
    caches: list[str] = field(default_factory=list)
    task_model: str | None = None
    pruned_model: str | None = None
    exit_model: str | None = None  # a task model with exits for erpack-exit-int8 (default: --task-model if it has them)
    prune: tuple[float, float] | None = None  # (heads, ffn) fractions: prune here by importance
    full_onnx_int8: str | None = None  # a full-model int8 graph made elsewhere (optimum)
    ode_model: str | None = None  # a shared-block task model (erpack train --shared-block) for erpack-ode-int8
    ode_steps: int | None = None  # its ODE steps (default: half of L-k, at least 1)
    paths: list[str] = field(default_factory=lambda: list(PATHS))
    limit: int | None = 256
    split: str | None = None  # train, validation, test or all; None: test when the corpus has splits, else all
    batch_size: int = 32
    max_tokens: int = 16384
    repeats: int = 5
    warmup: int = 1
    cold: bool = False
    threads: int | None = None
    device: str = "cpu"  # cpu, cuda, auto
    work: str = "runs/bench"
    train: int | None = None  # --train N: also time one training epoch from the cache vs full fine-tune
    command: str | None = None
    storage_options: dict | None = None  # fsspec options for --cache URLs (only their keys go in the result)

    def __post_init__(self):
        unknown = [p for p in self.paths if p not in PATHS]
        if unknown:
            raise InputError(f"unknown path {unknown[0]!r}; paths: {', '.join(PATHS)}")
        if self.repeats < 1 or self.warmup < 0:
            raise InputError(f"repeats must be >= 1 and warmup >= 0, got {self.repeats} and {self.warmup}")


def slug(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", spec).strip("-")


# ---- models and caches ------------------------------------------------------------------------
def load_models(cfg: BenchConfig, label_names: list[str]):
    """(full classifier, tokenizer, class names, trained?) from the task model or a random head."""
    from transformers import AutoTokenizer  # heavy: loaded when a benchmark runs, not on `erpack --help`

    from erpack.models import load_model, recorded_location  # torch and transformers

    if cfg.task_model:
        from erpack.train import TaskModel  # torch, and peft for adapter task models

        tm = TaskModel.load(cfg.task_model)
        name = recorded_location(tm.expected_cache["model"]) if tm.expected_cache.get("model") else cfg.model
        tok = AutoTokenizer.from_pretrained(resolve_model(cfg.model if cfg.model else name))
        return tm.model.eval(), tok, tm.labels, tm.layer, True
    torch.manual_seed(0)
    loaded = load_model(cfg.model, num_labels=max(2, len(label_names)))
    return loaded.model.eval(), loaded.tokenizer, label_names or ["0", "1"], None, False


def build_caches(cfg: BenchConfig, docs, layer: int, max_length: int, work: Path, progress=None) -> list[dict]:
    """The caches to read: those given, plus one per asked codec (encoded once into the work folder).
    Each comes with the encode summary that made it (seconds per document), when this run made it."""
    out = [{"path": str(c), "encode": None} for c in cfg.caches]
    if not cfg.codecs:
        return out
    corpus = work / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": d.id, "text": d.text}) + "\n" for d in docs))
    for spec in cfg.codecs:
        folder = work / f"cache-{slug(cfg.model)}-k{layer}-{slug(spec)}"
        summary_file = work / f"encode-{slug(cfg.model)}-k{layer}-{slug(spec)}.json"
        if not (folder / "manifest.json").exists() or not summary_file.exists():
            if folder.exists():
                shutil.rmtree(folder)  # a cache of another document set: start again
            s = encode_corpus(str(corpus), folder, model=cfg.model, layer=layer, codec=spec, max_length=max_length,
                              batch_size=cfg.batch_size, progress=progress, device=cfg.device)
            summary_file.write_text(json.dumps(s.as_dict(), indent=2) + "\n")
        out.append({"path": str(folder), "encode": json.loads(summary_file.read_text())})
    return out


# ---- the run -----------------------------------------------------------------------------------
def _where(cfg: BenchConfig, cache: str):
    """A --cache URL as a Location with the storage options; a path unchanged."""
    return open_location(cache, cfg.storage_options) if is_url(cache) else cache


def make_paths(cfg: BenchConfig, work: Workload, caches: list[dict], pruned, notes: list[str]) -> list:
    paths = []
    if "full-torch" in cfg.paths:
        paths.append(FullTorch(work))
    if "full-onnx-int8" in cfg.paths:
        paths.append(FullOnnxInt8(work, cfg.full_onnx_int8))
    for c in caches:
        where = _where(cfg, c["path"])
        if "erpack-torch" in cfg.paths:
            paths.append(ErpackTorch(work, where))
        if "erpack-onnx-fp32" in cfg.paths:
            paths.append(ErpackOnnx(work, where, int8=False))
        if "erpack-onnx-int8" in cfg.paths:
            paths.append(ErpackOnnx(work, where, int8=True))
        if "erpack-pruned-int8" in cfg.paths and pruned is not None:
            paths.append(ErpackPrunedInt8(work, where, pruned))
        if "erpack-exit-int8" in cfg.paths and exit_model(cfg, notes) is not None:
            paths.append(ErpackExitInt8(work, where, exit_model(cfg, notes)))
    ode = ode_model(cfg, work, notes) if caches else None
    for c in caches if ode is not None else []:
        paths.append(ErpackOdeInt8(work, _where(cfg, c["path"]), *ode))
    if not caches and any(p.startswith("erpack") for p in cfg.paths):
        notes.append("erpack paths skipped: no cache given (--cache) and no codec asked for (--codec)")
    return paths


def exit_model(cfg: BenchConfig, notes: list[str]) -> str | None:
    """The task model with exits erpack-exit-int8 runs (--exit-model, else --task-model when it has exits),
    or None with a note saying why the path is skipped."""
    for folder in (cfg.exit_model, cfg.task_model):
        if folder and isinstance(read_task_file(folder).get("early_exit"), dict):
            return folder
        if folder and folder == cfg.exit_model:
            raise InputError(f"--exit-model {folder} has no exits; train it with erpack train ... --early-exit "
                             f"dact|patience|entropy")
    note = ("erpack-exit-int8 skipped: give --exit-model (a task model trained with --early-exit), or a --task-model "
            "that has exits")
    if note not in notes:
        notes.append(note)
    return None


def ode_model(cfg: BenchConfig, work: Workload, notes: list[str]):
    """(shared-block TaskModel, steps) for erpack-ode-int8, or None with a note saying why not."""
    if "erpack-ode-int8" not in cfg.paths:
        return None
    if not cfg.ode_model:
        notes.append("erpack-ode-int8 skipped: give --ode-model (an `erpack train --shared-block` task model)")
        return None
    from erpack.depth.ode import check_steps, upper_depth
    from erpack.train import TaskModel

    tm = TaskModel.load(cfg.ode_model).to(next(work.model.parameters()).device)
    if tm.layer != work.layer:
        raise InputError(f"--ode-model {cfg.ode_model} runs from layer {tm.layer}, the benchmark's caches from "
                         f"layer {work.layer}: give --layer {tm.layer}")
    steps = cfg.ode_steps if cfg.ode_steps is not None else max(1, upper_depth(tm) // 2)
    return tm, check_steps(tm, steps)


def pruned_model(cfg: BenchConfig, work: Workload, caches: list[dict], reference: dict, notes: list[str]):
    """The pruned classifier for erpack-pruned-int8, or None with a note saying why not."""
    if "erpack-pruned-int8" not in cfg.paths:
        return None, None
    try:
        import erpack.prune  # noqa: F401
    except ImportError:
        notes.append("erpack-pruned-int8 skipped: erpack.prune is not installed in this checkout")
        return None, None
    if cfg.pruned_model:
        from erpack.train.taskmodel import TaskModel

        tm = TaskModel.load(cfg.pruned_model)
        return tm.model.eval(), {"source": cfg.pruned_model, "pruning": tm.info.get("pruning")}
    if cfg.prune is None or not caches:
        notes.append("erpack-pruned-int8 skipped: give --pruned-model (an `erpack prune` output) or --prune HEADS,FFN")
        return None, None
    # Importance from the model's own predictions on the first 64 documents (no labels used), no recovery.
    path = ErpackTorch(work, _where(cfg, caches[0]["path"]))
    path.prepare()
    rows = work.batches[: max(1, 64 // max(1, len(work.batches[0])))]
    batches = []
    for b in rows:
        h, m = path.decode_batch(b)
        dev = next(work.model.parameters()).device
        batches.append((torch.from_numpy(h).to(dev), torch.from_numpy(m).to(dev),
                        torch.as_tensor(reference["predictions"][b]).to(dev)))
    path.close()
    model, counts = prune_by_importance(work.model, work.layer, batches, *cfg.prune)
    notes.append(f"erpack-pruned-int8: pruned here (heads {cfg.prune[0]:g}, ffn {cfg.prune[1]:g}) by importance on "
                 "the full model's own predictions, without LoRA recovery: its speed is that of a recovered model, "
                 "its accuracy is not")
    return model, {"source": "pruned by erpack bench", "fractions": list(cfg.prune), "plan": counts}


def timed_pass(path, batches, cold: bool) -> tuple[float, dict, np.ndarray]:
    """One pass over every batch: (total seconds, seconds per section, predictions in document order)."""
    n = sum(len(b) for b in batches)
    preds = np.zeros(n, dtype=np.int64)
    t0 = time.perf_counter()
    path.begin_run(cold)
    for b in batches:
        preds[b] = path.run(b)
    total = time.perf_counter() - t0
    return total, dict(path.watch.seconds), preds


def prepare_workload(cfg: BenchConfig, docs: BenchDocuments, steps: Steps) -> tuple[Workload, list[str], bool]:
    """(the workload every path shares, class names, trained head?): model on its device, layer k,
    documents tokenized and batched by length."""
    steps.start("load the model")
    model, tokenizer, classes, task_layer, trained = load_models(cfg, sorted(set(docs.labels.values())))
    device = resolve_device(cfg.device)
    model.to(device)
    L = int(model.config.num_hidden_layers)
    k = cfg.layer if cfg.layer is not None else (task_layer if task_layer is not None else L // 2)
    if not 0 < k < L:
        raise InputError(f"--layer must be between 1 and {L - 1} for {cfg.model}, got {k}")
    steps.done()
    steps.start("tokenize")
    texts = [d.text for d in docs.docs]
    max_length = default_max_length(tokenizer, model.config)
    lengths = [len(x) for x in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    batches = length_batches(lengths, cfg.batch_size, cfg.max_tokens)
    work = Workload(ids=[d.id for d in docs.docs], texts=texts, lengths=lengths, batches=batches,
                    model=model, tokenizer=tokenizer, layer=k, max_length=max_length, work=Path(cfg.work),
                    threads=cfg.threads, device=str(device))
    scored = scored_documents({"split": docs.split, "split_source": docs.split_source})
    steps.done(f"{len(texts)} documents of {scored}, {sum(lengths)} tokens, {len(batches)} batches; "
               f"model {cfg.model} L={L} k={k}")
    return work, classes, trained


def reference_and_pruned(cfg: BenchConfig, work: Workload, caches: list[dict], notes: list[str], steps: Steps):
    """(the full PyTorch model's predictions or None, the pruned model or None, what was pruned): two steps."""
    reference, pruned, pruned_info = None, None, None
    steps.start("reference predictions")
    if "full-torch" in cfg.paths:  # the reference's predictions, for agreement and for pruning importance
        ref = FullTorch(work)
        ref.prepare()
        reference = {"predictions": timed_pass(ref, work.batches, False)[2]}
    steps.done()
    steps.start("prune")
    if reference is not None:
        pruned, pruned_info = pruned_model(cfg, work, caches, reference, notes)
    elif "erpack-pruned-int8" in cfg.paths:
        notes.append("erpack-pruned-int8 skipped: it needs the full-torch path as reference")
    steps.done()
    return reference, pruned, pruned_info


def prepare_paths(paths: list, notes: list[str], steps: Steps) -> list:
    """The paths whose preparation (graphs exported, sessions opened, caches mapped) succeeded."""
    prepared = []
    steps.add(len(paths))
    for p in paths:
        label = getattr(p, "label", p.name)
        steps.start(f"prepare {label}")
        t0 = time.perf_counter()
        try:
            p.prepare()
        except (ImportError, ErpackError) as exc:
            notes.append(f"{label} skipped: {exc}")
            steps.done()
            continue
        p.prepare_seconds = time.perf_counter() - t0
        prepared.append(p)
        steps.done(f"prepared {label} in {p.prepare_seconds:.1f} s")
    return prepared


def interleaved_passes(cfg: BenchConfig, prepared: list, batches, log) -> tuple[dict[int, list], dict[int, np.ndarray]]:
    """Warm-up passes, then `repeats` timed passes interleaved across paths: ({path: [(total, sections)]},
    {path: predictions of its last pass})."""
    preds: dict[int, np.ndarray] = {}
    for _ in range(cfg.warmup):
        for i, p in enumerate(prepared):
            preds[i] = timed_pass(p, batches, False)[2]
    runs: dict[int, list] = {i: [] for i in range(len(prepared))}
    for r in range(cfg.repeats):
        for i, p in enumerate(prepared):
            total, sections, pr = timed_pass(p, batches, cfg.cold)
            runs[i].append((total, sections))
            preds[i] = pr
        log(f"repeat {r + 1}/{cfg.repeats} done")
    for p in prepared:
        p.close()
    return runs, preds


def training_result(cfg: BenchConfig, layer: int, notes: list[str], log) -> dict | None:
    """`--train N`: one epoch from the cache against one of full fine-tuning, or None."""
    if not cfg.train:
        return None
    try:  # erpack.train (and peft) load inside bench_training: optional here
        log(f"training benchmark: {cfg.train} training documents, one epoch each way")
        return bench_training(cfg.corpus, cfg.model, layer, (cfg.codecs or ["int8+zstd:3"])[0], Path(cfg.work),
                              cfg.train, cfg.batch_size, cfg.device)
    except ImportError as exc:
        notes.append(f"training benchmark skipped: erpack.train is not available ({exc})")
        return None


def workload_dict(cfg: BenchConfig, docs: BenchDocuments, work: Workload, classes, trained: bool, labelled: bool) -> dict:
    """The result's `workload`: what was scored (corpus, split, documents, tokens), the model and k."""
    tokens, L, k = sum(work.lengths), work.num_layers, work.layer
    return {"corpus": cfg.corpus, "split": docs.split, "split_source": docs.split_source,
            "documents": len(docs.docs), "tokens": tokens,
            "tokens_per_document": tokens / len(docs.docs), "batches": len(work.batches), "batch_size": cfg.batch_size,
            "max_length": work.max_length, "model": cfg.model, "num_layers": L, "layer": k,
            "compute_bound": L / (L - k), "task_model": cfg.task_model, "trained_head": trained,
            "labels": labelled, "classes": classes}


def run_bench(cfg: BenchConfig, progress=None, log=None) -> BenchResult:
    """Run the benchmark. `progress(total=, desc=, unit=)` makes a tqdm-like bar (preparation steps,
    encoding); `log(message)` takes a line per finished step."""
    log = log or (lambda msg: None)
    t_start = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    Path(cfg.work).mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    steps = Steps(progress, total=6, desc="bench", log=log)  # then one per path
    try:
        steps.start("read the documents")
        docs = read_documents(cfg.corpus, cfg.limit, cfg.split)
        if not docs.docs:
            raise InputError(f"corpus {cfg.corpus} holds no documents")
        steps.done()
        work, classes, trained = prepare_workload(cfg, docs, steps)
        steps.start("encode the caches")
        caches = build_caches(cfg, docs.docs, work.layer, work.max_length, work.work, progress) if any(
            p.startswith("erpack") for p in cfg.paths) else []
        steps.done()
        reference, pruned, pruned_info = reference_and_pruned(cfg, work, caches, notes, steps)
        prepared = prepare_paths(make_paths(cfg, work, caches, pruned, notes), notes, steps)
    finally:
        steps.close()
    notes += [f"graph {key}.int8: {quantization_note(work, key)}" for key in sorted(work.quantization)]
    runs, preds = interleaved_passes(cfg, prepared, work.batches, log)
    y = true_classes(docs, classes, trained)
    tokens = sum(work.lengths)
    results = with_speedups([path_result(p, runs[i], preds[i], len(docs.docs), tokens, work.num_layers, work.layer, y,
                                         reference) for i, p in enumerate(prepared)])
    training = training_result(cfg, work.layer, notes, log)
    if not trained:
        notes.append("accuracy n/a (untrained head): a randomly initialised classification head; paths are compared "
                     "by agreement with the full PyTorch model's predictions")
    config = asdict(cfg)
    if config["storage_options"] is not None:  # keys may hold credentials: the result names the options only
        config["storage_options"] = sorted(config["storage_options"])
    return BenchResult(command=cfg.command, config=config, machine=describe_machine(cfg.threads),
                       workload=workload_dict(cfg, docs, work, classes, trained, y is not None), caches=caches,
                       pruned=pruned_info, quantization=work.quantization, paths=results, training=training,
                       notes=notes, seconds=time.perf_counter() - t_start)
