"""`erpack bench` as a library call: the same documents through every inference path, timed.

    result = run_bench(BenchConfig(corpus="rotten_tomatoes:test", model="minilm", layer=3,
                                   codecs=["int8+zstd:3"], limit=512, repeats=5))

Steps: read the documents (and their labels where the corpus has them); load the task model (or a
randomly initialised head: then accuracy is n/a and paths are compared by agreement with the full
model); build missing caches with erpack.encode into the work folder; prepare every path; one
warm-up pass each; then `repeats` timed passes, interleaved (A, B, C, A, B, C, ...) so load from
other processes hurts every path alike; report medians, spread and the per-section breakdown.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from erpack.bench.paths import (
    ErpackOnnx,
    ErpackPrunedInt8,
    ErpackTorch,
    FullOnnxInt8,
    FullTorch,
    Workload,
    prune_by_importance,
    quantization_note,
)
from erpack.errors import ErpackError, InputError
from erpack.runtime.device import resolve_device
from erpack.runtime.timing import SECTIONS, describe_machine, summarize

PATHS = ("full-torch", "full-onnx-int8", "erpack-torch", "erpack-onnx-fp32", "erpack-onnx-int8", "erpack-pruned-int8")


@dataclass
class BenchConfig:
    corpus: str
    model: str = "minilm"
    layer: int | None = None
    codecs: list[str] = field(default_factory=list)
    caches: list[str] = field(default_factory=list)
    task_model: str | None = None
    pruned_model: str | None = None
    prune: tuple[float, float] | None = None  # (heads, ffn) fractions: prune here by importance
    full_onnx_int8: str | None = None  # a full-model int8 graph made elsewhere (optimum)
    paths: list[str] = field(default_factory=lambda: list(PATHS))
    limit: int | None = 256
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

    def __post_init__(self):
        unknown = [p for p in self.paths if p not in PATHS]
        if unknown:
            raise InputError(f"unknown path {unknown[0]!r}; paths: {', '.join(PATHS)}")
        if self.repeats < 1 or self.warmup < 0:
            raise InputError(f"repeats must be >= 1 and warmup >= 0, got {self.repeats} and {self.warmup}")


def slug(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", spec).strip("-")


# ---- documents and labels ----------------------------------------------------------------------
def read_documents(corpus: str, limit: int | None) -> tuple[list, dict[str, str]]:
    """(documents, {id: label}) for a corpus; labels from built-in data sets or a JSONL `label` field."""
    from itertools import islice

    from erpack.corpus import iter_corpus

    docs = list(islice(iter_corpus(corpus), limit))
    labels: dict[str, str] = {}
    path = Path(corpus)
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        wanted = {d.id for d in docs}
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                if str(row.get("id")) in wanted and row.get("label") is not None:
                    labels[str(row["id"])] = str(row["label"])
    elif not path.exists():
        from erpack.assets import load_dataset

        name, _, split = corpus.partition(":")
        labels = {r.id: r.label for r in load_dataset(name, split=split or None)}
    return docs, labels


def load_models(cfg: BenchConfig, label_names: list[str]):
    """(full classifier, tokenizer, class names, trained?) from the task model or a random head."""
    from transformers import AutoTokenizer

    from erpack.assets import resolve_model
    from erpack.models import load_model

    if cfg.task_model:
        from erpack.train import TaskModel

        tm = TaskModel.load(cfg.task_model)
        name = tm.expected_cache["model"].get("name") or cfg.model
        tok = AutoTokenizer.from_pretrained(resolve_model(cfg.model if cfg.model else name))
        return tm.model.eval(), tok, tm.labels, tm.layer, True
    torch.manual_seed(0)
    loaded = load_model(cfg.model, num_labels=max(2, len(label_names)))
    return loaded.model.eval(), loaded.tokenizer, label_names or ["0", "1"], None, False


def build_caches(cfg: BenchConfig, docs, layer: int, max_length: int, work: Path, progress=None) -> list[dict]:
    """The caches to read: those given, plus one per asked codec (encoded once into the work folder).
    Each comes with the encode summary that made it (seconds per document), when this run made it."""
    from erpack.encode import encode_corpus

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
                import shutil

                shutil.rmtree(folder)  # a cache of another document set: start again
            s = encode_corpus(str(corpus), folder, model=cfg.model, layer=layer, codec=spec, max_length=max_length,
                              batch_size=cfg.batch_size, progress=progress, device=cfg.device)
            summary_file.write_text(json.dumps(s.as_dict(), indent=2) + "\n")
        out.append({"path": str(folder), "encode": json.loads(summary_file.read_text())})
    return out


# ---- the run -----------------------------------------------------------------------------------
def make_paths(cfg: BenchConfig, work: Workload, caches: list[dict], pruned, notes: list[str]) -> list:
    paths = []
    if "full-torch" in cfg.paths:
        paths.append(FullTorch(work))
    if "full-onnx-int8" in cfg.paths:
        paths.append(FullOnnxInt8(work, cfg.full_onnx_int8))
    for c in caches:
        if "erpack-torch" in cfg.paths:
            paths.append(ErpackTorch(work, c["path"]))
        if "erpack-onnx-fp32" in cfg.paths:
            paths.append(ErpackOnnx(work, c["path"], int8=False))
        if "erpack-onnx-int8" in cfg.paths:
            paths.append(ErpackOnnx(work, c["path"], int8=True))
        if "erpack-pruned-int8" in cfg.paths and pruned is not None:
            paths.append(ErpackPrunedInt8(work, c["path"], pruned))
    if not caches and any(p.startswith("erpack") for p in cfg.paths):
        notes.append("erpack paths skipped: no cache given (--cache) and no codec asked for (--codec)")
    return paths


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
    path = ErpackTorch(work, caches[0]["path"])
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


def run_bench(cfg: BenchConfig, progress=None, log=None) -> dict:
    """Run the benchmark; returns the JSON-able result (see docs/benchmarks.md for its fields)."""
    from erpack.batching import length_batches
    from erpack.encode import default_max_length

    log = log or (lambda msg: None)
    t_start = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    work_dir = Path(cfg.work)
    work_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    docs, labels = read_documents(cfg.corpus, cfg.limit)
    if not docs:
        raise InputError(f"corpus {cfg.corpus} holds no documents")
    model, tokenizer, classes, task_layer, trained = load_models(cfg, sorted(set(labels.values())))
    device = resolve_device(cfg.device)
    model.to(device)
    L = int(model.config.num_hidden_layers)
    k = cfg.layer if cfg.layer is not None else (task_layer if task_layer is not None else L // 2)
    if not 0 < k < L:
        raise InputError(f"--layer must be between 1 and {L - 1} for {cfg.model}, got {k}")
    max_length = default_max_length(tokenizer, model.config)
    lengths = [len(x) for x in tokenizer([d.text for d in docs], truncation=True, max_length=max_length)["input_ids"]]
    batches = length_batches(lengths, cfg.batch_size, cfg.max_tokens)
    work = Workload(ids=[d.id for d in docs], texts=[d.text for d in docs], lengths=lengths, batches=batches,
                    model=model, tokenizer=tokenizer, layer=k, max_length=max_length, work=work_dir,
                    threads=cfg.threads, device=str(device))
    log(f"{len(docs)} documents, {sum(lengths)} tokens, {len(batches)} batches; model {cfg.model} L={L} k={k}")
    caches = build_caches(cfg, docs, k, max_length, work_dir, progress) if any(
        p.startswith("erpack") for p in cfg.paths) else []

    reference = None
    if "full-torch" in cfg.paths:  # the reference's predictions, for agreement and for pruning importance
        ref = FullTorch(work)
        ref.prepare()
        reference = {"predictions": timed_pass(ref, batches, False)[2]}
    pruned, pruned_info = pruned_model(cfg, work, caches, reference or {"predictions": None}, notes) if reference \
        else (None, None)
    if "erpack-pruned-int8" in cfg.paths and reference is None:
        notes.append("erpack-pruned-int8 skipped: it needs the full-torch path as reference")
    paths = make_paths(cfg, work, caches, pruned, notes)
    prepared = []
    for p in paths:
        t0 = time.perf_counter()
        try:
            p.prepare()
        except (ImportError, ErpackError) as exc:
            notes.append(f"{getattr(p, 'label', p.name)} skipped: {exc}")
            continue
        p.prepare_seconds = time.perf_counter() - t0
        prepared.append(p)
        log(f"prepared {getattr(p, 'label', p.name)} in {p.prepare_seconds:.1f} s")

    for key in sorted(work.quantization):
        notes.append(f"graph {key}.int8: {quantization_note(work, key)}")

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

    y = None
    if trained and labels and all(d.id in labels for d in docs):
        index = {c: j for j, c in enumerate(classes)}
        if all(labels[d.id] in index for d in docs):
            y = np.array([index[labels[d.id]] for d in docs])
    tokens = sum(lengths)
    results = [path_result(p, runs[i], preds[i], len(docs), tokens, L, k, y, reference) for i, p in enumerate(prepared)]
    base = next((r for r in results if r["path"] == "full-torch"), None)
    onnx = next((r for r in results if r["path"] == "full-onnx-int8"), None)
    for r in results:
        r["speedup_vs_full_torch"] = base["seconds"]["median"] / r["seconds"]["median"] if base else None
        r["speedup_vs_full_onnx_int8"] = onnx["seconds"]["median"] / r["seconds"]["median"] if onnx else None
    training = None
    if cfg.train:
        try:
            from erpack.bench.training import bench_training

            log(f"training benchmark: {cfg.train} training documents, one epoch each way")
            training = bench_training(cfg.corpus, cfg.model, k, (cfg.codecs or ["int8+zstd:3"])[0], work_dir, cfg.train,
                                      cfg.batch_size, cfg.device)
        except ImportError as exc:
            notes.append(f"training benchmark skipped: erpack.train is not available ({exc})")
    if not trained:
        notes.append("accuracy n/a (untrained head): a randomly initialised classification head; paths are compared "
                     "by agreement with the full PyTorch model's predictions")
    return {
        "kind": "erpack-bench", "version": 1, "command": cfg.command, "config": asdict(cfg),
        "machine": describe_machine(cfg.threads),
        "workload": {"corpus": cfg.corpus, "documents": len(docs), "tokens": tokens,
                     "tokens_per_document": tokens / len(docs), "batches": len(batches), "batch_size": cfg.batch_size,
                     "max_length": max_length, "model": cfg.model, "num_layers": L, "layer": k,
                     "compute_bound": L / (L - k), "task_model": cfg.task_model, "trained_head": trained,
                     "labels": bool(y is not None), "classes": classes},
        "caches": caches, "pruned": pruned_info, "quantization": work.quantization, "paths": results,
        "training": training, "notes": notes,
        "seconds": time.perf_counter() - t_start,
    }


def path_result(p, runs, preds, n_docs, tokens, L, k, y, reference) -> dict:
    totals = [t for t, _ in runs]
    names = [s for s in SECTIONS if any(s in sec for _, sec in runs)]
    breakdown = {s: float(np.median([sec.get(s, 0.0) for _, sec in runs])) for s in names}
    med = float(np.median(totals))
    breakdown["other"] = max(0.0, med - sum(breakdown.values()))
    d = p.describe()
    out = {"path": p.name, "label": getattr(p, "label", p.name), "codec": d.get("codec"),
           "seconds": summarize(totals), "breakdown": breakdown,
           "runs": [{"total": t, "sections": sec} for t, sec in runs],
           "breakdown_share": {s: v / med for s, v in breakdown.items()} if med else {},
           "documents_per_second": n_docs / med, "tokens_per_second": tokens / med,
           "compute_bound": L / (L - k) if p.name.startswith("erpack") else None,
           "bytes_per_token": d.get("bytes_per_token"), "bits_per_value": d.get("bits_per_value"),
           "prepare_seconds": getattr(p, "prepare_seconds", None),
           "accuracy": float((preds == y).mean()) if y is not None else None,
           "agreement_with_full_torch": float((preds == reference["predictions"]).mean()) if reference else None,
           "notes": d.get("notes", [])}
    if getattr(p, "evicted", None):
        out["evicted"] = p.evicted
    if hasattr(p, "graph_bytes"):
        out["graph_bytes"] = p.graph_bytes
    return out
