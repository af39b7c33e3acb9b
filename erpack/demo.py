"""The built-in demo: the whole erpack pipeline on the real MiniLM and real Rotten Tomatoes reviews.

Each step calls the library function its command calls (nothing is shelled out or done twice):

    1 parity    split the model at layer k; upper(lower(x)) must equal the full model on real batches
    2 encode    a subset of the data set through layers 0..k-1 into a lossless cache (erpack encode;
                resumed when the cache is there already), checked whole (erpack verify)
    3 compress  the codec table (int8z, int4z, bf16z, lossless) on a sample of it (erpack compress),
                and the int8z cache the task model is trained on (erpack compress --out)
    4 train     LoRA adapters in layers k..L-1 + a head, from the int8z cache (erpack train --mode adapter)
    5 prune     heads and feed-forward neurons of layers k..L-1, recovered with LoRA (erpack prune)
    6 export    the pruned upper stack to ONNX, fp32 and int8 dynamic, checked against PyTorch (erpack export)
    7 predict   the test documents from the cache with onnxruntime (erpack predict)
    8 report    storage size, cost and break-even per codec, HTML + Markdown + JSON (erpack report)

Everything goes into one folder (`out`): the subset as JSONL (id, text, label, split: corpus and labels
at once), the caches, the task models, the graphs, the predictions, the report and demo.json.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from erpack.assets import load_dataset
from erpack.batching import length_batches
from erpack.codecs import Pipeline
from erpack.compress import load_source, measure, recode_cache
from erpack.encode import encode_corpus
from erpack.errors import InputError
from erpack.models import load_model, split_model
from erpack.predict import predict
from erpack.report import ReportConfig, build_report, write_report
from erpack.runtime.timing import describe_machine, interleaved_medians
from erpack.store import verify_cache

STEPS = ("parity", "encode", "compress", "train", "prune", "export", "predict", "report")
CODECS = ("int8z", "int4z", "bf16z", "lossless")  # measured in the compress step
TRAIN_CODEC = "int8z"  # the cache the task model trains on, and is served from
PARITY_TOLERANCE = 1e-5


@dataclass
class DemoConfig:
    """What the demo runs on and how much of it; `quick()` is the tiniest run (the test suite's)."""

    out: str = "erpack-demo"
    model: str = "minilm"
    dataset: str = "rotten_tomatoes"
    layer: int | None = None  # default: the middle, L // 2 (3 for MiniLM)
    documents: int = 2000  # taken evenly over the whole data set; its own splits decide train/validation/test
    max_length: int = 128
    batch_size: int = 32
    epochs: int = 2  # adapter training, and LoRA recovery after pruning
    rank: int = 16
    prune: float = 0.4  # fraction of the upper stack's heads and feed-forward neurons removed
    parity_documents: int = 32
    sample: int = 200  # records measured by the compress table and the report
    prune_samples: int = 256  # training documents the pruning importance is scored on
    timing_runs: int = 10  # of the export's int8 latency comparison
    projected_documents: float = 100_000_000  # corpus size the report projects to
    seed: int = 0
    device: str = "auto"

    @classmethod
    def quick(cls, **kw) -> DemoConfig:
        small = dict(documents=160, epochs=1, parity_documents=8, sample=24, prune_samples=32, timing_runs=2)
        small.update({k: v for k, v in kw.items() if v is not None})
        return cls(**small)


@dataclass
class Paths:
    root: Path
    corpus: Path = field(init=False)
    reference: Path = field(init=False)
    cache: Path = field(init=False)
    trained: Path = field(init=False)
    pruned: Path = field(init=False)
    graph: Path = field(init=False)
    predictions: Path = field(init=False)
    report: Path = field(init=False)

    def __post_init__(self):
        r = self.root
        self.corpus, self.reference, self.cache = r / "corpus.jsonl", r / "cache-lossless", r / f"cache-{TRAIN_CODEC}"
        self.trained, self.pruned = r / "model-lora", r / "model-pruned"
        self.graph, self.predictions, self.report = r / "onnx" / "model.onnx", r / "predictions.jsonl", r / "report.html"


# ---- step 1: the split is exact -----------------------------------------------------------------------
def split_parity(model: str = "minilm", dataset: str = "rotten_tomatoes", layer: int | None = None,
                 documents: int = 32, batch_size: int = 32, max_length: int = 128, repeats: int = 3,
                 progress: Callable | None = None) -> dict:
    """Split `model` at `layer` (default: the middle): the largest |upper(lower(x)) - model(x)| over real
    padded batches of `dataset`'s validation documents, and the time of lower, upper and full model."""
    loaded = load_model(model)
    num_layers = loaded.num_layers
    k = num_layers // 2 if layer is None else layer
    if not 0 <= k <= num_layers:
        raise InputError(f"--layer must be between 0 and {num_layers} for {model}, got {k}")
    lower, upper = split_model(loaded.model, k)
    records = load_dataset(dataset, split="validation", limit=documents)
    encoded = [loaded.tokenizer(r.text, truncation=True, max_length=max_length)["input_ids"] for r in records]
    batches = length_batches([len(e) for e in encoded], batch_size)
    pad = loaded.tokenizer.pad_token_id or 0

    totals = {"lower": 0.0, "upper": 0.0, "full": 0.0}
    worst, tokens = 0.0, 0
    iterator = progress(batches, desc="parity", unit="batch") if progress else batches
    with torch.no_grad():
        for batch in iterator:
            longest = max(len(encoded[i]) for i in batch)
            ids = torch.full((len(batch), longest), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), longest), dtype=torch.long)
            for row, i in enumerate(batch):
                ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
                mask[row, : len(encoded[i])] = 1
            tokens += int(mask.sum())
            hidden = lower(ids, mask)
            out = upper(hidden, mask)
            full = loaded.model(input_ids=ids, attention_mask=mask).last_hidden_state
            keep = mask.bool()
            worst = max(worst, (out[keep] - full[keep]).abs().max().item())
            times = interleaved_medians({  # in turns, so a busy spell of the machine hits all three alike
                "lower": lambda: lower(ids, mask),  # noqa: B023
                "upper": lambda: upper(hidden, mask),  # noqa: B023
                "full": lambda: loaded.model(input_ids=ids, attention_mask=mask),  # noqa: B023
            }, runs=repeats, warmup=1)
            for name in totals:
                totals[name] += times[name]["median_ms"] / 1e3
    return {
        "model": model, "model_path": loaded.path, "weights_sha256": loaded.sha256, "dataset": dataset,
        "documents": len(records), "tokens": tokens, "batches": len(batches), "num_layers": num_layers, "layer": k,
        "parity_max_abs_diff": worst, "tolerance": PARITY_TOLERANCE, "ok": worst <= PARITY_TOLERANCE,
        "timing_seconds": totals,
        "speedup_upper_vs_full": totals["full"] / totals["upper"] if totals["upper"] else None,
        "compute_bound": num_layers / (num_layers - k) if k < num_layers else None,
    }


# ---- the subset -------------------------------------------------------------------------------------
def write_subset(dataset: str, documents: int, path: Path) -> dict:
    """`documents` records taken evenly over the whole data set (every label and split represented),
    written as JSONL with id, text, label and split: a corpus for encode and a label source at once."""
    if documents < 3:
        raise InputError(f"--documents must be at least 3 (train, validation and test need one each), got {documents}")
    records = load_dataset(dataset)
    pick = sorted(set(np.linspace(0, len(records) - 1, num=min(documents, len(records))).round().astype(int).tolist()))
    chosen = [records[i] for i in pick]
    counts = {s: sum(r.split == s for r in chosen) for s in ("train", "validation", "test")}
    if not all(counts.values()):
        raise InputError(f"{documents} documents of {dataset} leave a split empty ({counts}); take more --documents")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in chosen:
            f.write(json.dumps({"id": r.id, "text": r.text, "label": r.label, "split": r.split}) + "\n")
    tmp.replace(path)
    return {"documents": len(chosen), "splits": counts, "labels": sorted({r.label for r in chosen}), "file": str(path)}


def _fresh(folder: Path) -> None:
    """Remove a cache or model folder this demo wrote before (only those: a folder of something else stays)."""
    if folder.is_dir() and any((folder / f).is_file() for f in ("manifest.json", "erpack_task.json")):
        shutil.rmtree(folder)


# ---- the whole pipeline -------------------------------------------------------------------------------
def run_demo(cfg: DemoConfig | None = None, progress: Callable | None = None,
             on_step: Callable[[int, str, dict], None] | None = None) -> dict:
    """Run the eight steps; returns {config, out, steps: {name: figures incl. seconds}, seconds, ok}.

    `progress(iterable=None, total=None, desc=..., unit=...)` makes a tqdm-like bar; `on_step(index,
    name, figures)` is called as each step ends (the CLI prints its line there)."""
    import transformers

    cfg = cfg or DemoConfig()
    transformers.logging.set_verbosity_error()  # the new head's "newly initialised" report is expected
    with warnings.catch_warnings():  # PEFT asks transformers a deprecated question on every adapter it adds
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return _pipeline(cfg, progress, on_step)


@dataclass
class DemoRun:
    """One run of the demo: its settings, its files, the figures of the steps done so far, and how it
    reports (`progress` makes bars, `on_step` hears each finished step)."""

    cfg: DemoConfig
    paths: Paths
    progress: Callable | None = None
    on_step: Callable | None = None
    steps: dict[str, dict] = field(default_factory=dict)

    def bar(self, *args, **kw):
        """A transient progress bar, or None without `progress`: the factory the library functions take."""
        return self.progress(*args, leave=False, **kw) if self.progress else None

    def done(self, name: str, t0: float, figures: dict) -> dict:
        """Record step `name`'s figures with its seconds since t0, and tell on_step."""
        figures["seconds"] = time.perf_counter() - t0
        self.steps[name] = figures
        if self.on_step:
            self.on_step(STEPS.index(name) + 1, name, figures)
        return figures


def parity_step(run: DemoRun) -> dict:
    """1. parity (also checks the model and the data set before anything is written)."""
    cfg, t0 = run.cfg, time.perf_counter()
    par = split_parity(cfg.model, cfg.dataset, cfg.layer, cfg.parity_documents, cfg.batch_size, cfg.max_length,
                       progress=run.bar if run.progress else None)
    return run.done("parity", t0, par)


def encode_step(run: DemoRun, k: int):
    """2. encode the subset into a lossless cache (resumed if there), and verify it. Returns the EncodeSummary."""

    cfg, paths, t0 = run.cfg, run.paths, time.perf_counter()
    subset = write_subset(cfg.dataset, cfg.documents, paths.corpus)
    enc = encode_corpus(str(paths.corpus), str(paths.reference), model=cfg.model, layer=k, codec="lossless",
                        max_length=cfg.max_length, batch_size=cfg.batch_size, on_duplicate="skip",
                        device=cfg.device, progress=run.bar)
    ver = verify_cache(paths.reference)
    run.done("encode", t0, {**subset, "cache": str(paths.reference), "encode": enc.as_dict(),
                            "verified": ver.ok, "verify_failures": len(ver.failures)})
    return enc


def _with_bar(run: DemoRun, total: int, desc: str, work: Callable):
    """work(update or None) under a transient bar of `total` documents."""
    b = run.bar(total=total, desc=desc, unit="doc")
    try:
        return work(b.update if b else None)
    finally:
        if b:
            b.close()


def compress_step(run: DemoRun, cached_documents: int) -> dict:
    """3. the codec table on a sample, and the int8z cache the task model uses."""
    paths, t0 = run.paths, time.perf_counter()
    records, _ = load_source(paths.reference, limit=run.cfg.sample)
    rows = []
    for spec in CODECS:
        row = _with_bar(run, len(records), f"measure {spec}", lambda up, spec=spec: measure(spec, records, progress=up))
        rows.append(dict(row.as_dict(), preset=spec))
    _fresh(paths.cache)
    written = _with_bar(run, cached_documents, f"write {TRAIN_CODEC} cache",
                        lambda up: recode_cache(paths.reference, paths.cache, TRAIN_CODEC, progress=up))
    ver8 = verify_cache(paths.cache)
    return run.done("compress", t0, {"sample_documents": len(records),
                                     "sample_tokens": sum(a.shape[0] for _, a in records),
                                     "rows": rows, "cache": written.as_dict(), "verified": ver8.ok})


def train_step(run: DemoRun) -> dict:
    """4. train LoRA adapters + head from the int8z cache."""
    from erpack.train import AdapterSpec, TrainConfig  # torch, peft
    from erpack.train.trainer import train_from_cache

    cfg, paths, t0 = run.cfg, run.paths, time.perf_counter()
    _fresh(paths.trained)
    tcfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed, device=cfg.device)
    tr = train_from_cache(paths.cache, str(paths.corpus), mode="adapter", adapter=AdapterSpec("lora", r=cfg.rank),
                          output=paths.trained, config=tcfg, progress=run.bar)
    r = tr.recycled
    return run.done("train", t0, {"output": str(paths.trained), "documents": tr.documents, "labels": tr.labels,
                                  "accuracy": r.test["accuracy"],
                                  "validation_accuracy": r.best_validation["accuracy"],
                                  "epochs": len(r.epochs), "trainable_params": r.trainable_params,
                                  "total_params": r.total_params,
                                  "train_seconds_per_epoch": r.train_seconds_per_epoch})


def prune_step(run: DemoRun) -> dict:
    """5. prune heads + FFN neurons of the upper stack, recover with LoRA."""
    from erpack.prune import Fractions, RecoveryConfig, prune_task_model  # torch, peft
    from erpack.train import TrainConfig

    cfg, paths, t0 = run.cfg, run.paths, time.perf_counter()
    _fresh(paths.pruned)
    recovery = RecoveryConfig(epochs=cfg.epochs)
    pcfg = TrainConfig(epochs=recovery.epochs, batch_size=cfg.batch_size, lr=recovery.lr, seed=cfg.seed,
                       device=cfg.device)
    _, pr = prune_task_model(paths.trained, paths.cache, str(paths.corpus), Fractions(cfg.prune, cfg.prune),
                             output=paths.pruned, recovery=recovery, samples=cfg.prune_samples, train_cfg=pcfg,
                             progress=run.bar)
    plan = pr.plan.counts()
    return run.done("prune", t0, {"output": str(paths.pruned), "heads": cfg.prune, "ffn": cfg.prune,
                                  "heads_kept": plan["heads_kept"], "heads_total": plan["heads_total"],
                                  "neurons_kept": plan["neurons_kept"], "neurons_total": plan["neurons_total"],
                                  "layers_dropped": plan["layers_dropped"], "params_before": pr.params_before,
                                  "params_after": pr.params_after, "accuracy": pr.test["accuracy"],
                                  "recovery_epochs": len(pr.recovery.epochs) if pr.recovery else 0})


def export_step(run: DemoRun) -> dict:
    """6. export the pruned model: fp32 + int8 dynamic, parity against PyTorch on cached records."""
    from erpack.export import export_task_model  # torch, onnx

    paths, t0 = run.paths, time.perf_counter()
    ex = export_task_model(paths.pruned, paths.graph, quantize="dynamic", calibration_cache=paths.cache,
                           timing_runs=run.cfg.timing_runs, overwrite=True)  # the demo's own folder: rerun replaces
    variants = [{key: v.get(key) for key in ("variant", "path", "bytes", "size_ratio", "agreement", "timing")}
                for v in (v.as_dict() for v in ex.variants)]
    return run.done("export", t0, {"output": ex.output, "bytes": ex.bytes, "parity_max_diff": ex.parity["max_diff"],
                                   "tolerance": ex.parity["tolerance"], "variants": variants, "notes": ex.notes})


def predict_step(run: DemoRun) -> dict:
    """7. predict the test documents from the cache with onnxruntime, fp32 and int8."""

    cfg, paths, t0 = run.cfg, run.paths, time.perf_counter()
    served = {}
    graphs = [("fp32", paths.graph)] + [(v["variant"], Path(v["path"])) for v in run.steps["export"]["variants"]]
    for name, graph in graphs:
        out = paths.predictions if name == "fp32" else paths.predictions.with_suffix(f".{name}.jsonl")
        s = predict(graph, paths.cache, labels=str(paths.corpus), split="test", output=out, device=cfg.device,
                    batch_size=cfg.batch_size, progress=run.bar).as_dict()
        served[name] = {"graph": str(graph), "output": str(out), "documents": s["predicted"],
                        "accuracy": s["metrics"]["accuracy"], "provider": s["provider"], "seconds": s["seconds"],
                        "missing": len(s["missing"])}
    fp32 = served["fp32"]
    return run.done("predict", t0, {"documents": fp32["documents"], "accuracy": fp32["accuracy"],
                                    "provider": fp32["provider"], "output": fp32["output"], "graphs": served,
                                    "matches_pytorch": abs(fp32["accuracy"] - run.steps["prune"]["accuracy"]) < 1e-9})


def report_row(row: dict, presets: dict[str, str]) -> dict:
    """The figures of one report row the demo keeps."""
    be = row["break_even"]
    return {"codec": row["codec"], "preset": presets.get(row["codec"]), "kind": row["kind"],
            "bits_per_value": row["bits_per_value"], "bytes_per_token": row["bytes_per_token"],
            "sqnr_db": row["sqnr_db"], "lossless": row["lossless"], "projected_bytes": row["projection"]["bytes"],
            "monthly_cost": row["projection"]["monthly_cost"],
            "break_even_runs": be["break_even_runs"] if be else None}


def report_step(run: DemoRun) -> dict:
    """8. the storage-cost report of both caches, plus bf16z / int4z re-encoded from the lossless one."""
    cfg, paths, t0 = run.cfg, run.paths, time.perf_counter()
    others = [c for c in CODECS if c not in ("lossless", TRAIN_CODEC)]
    rcfg = ReportConfig(caches=[str(paths.reference), str(paths.cache)], codecs=others,
                        documents=cfg.projected_documents, sample=cfg.sample,
                        command=f"erpack report {paths.reference} {paths.cache} "
                                + " ".join(f"--codec {c}" for c in others) + f" -o {paths.report}")
    rep = build_report(rcfg)
    files = write_report(rep, paths.report)
    presets = {Pipeline.from_spec(c).spec: c for c in CODECS}
    return run.done("report", t0, {"files": {k2: [str(x) for x in v] if isinstance(v, list | tuple) else str(v)
                                             for k2, v in files.items()},
                                   "rows": [report_row(row, presets) for row in rep.rows],
                                   "projected_documents": rep.rows[0]["projection"]["documents"],
                                   "projected_tokens": rep.rows[0]["projection"]["tokens"],
                                   "profile_mean_tokens": rep.profile["mean"], "notes": rep.notes})


def _pipeline(cfg: DemoConfig, progress: Callable | None, on_step: Callable | None) -> dict:
    run = DemoRun(cfg, Paths(Path(cfg.out)), progress, on_step)
    t_all = time.perf_counter()
    par = parity_step(run)
    enc = encode_step(run, par["layer"])
    compress_step(run, enc.cache_documents)
    train_step(run)
    prune_step(run)
    export_step(run)
    served = predict_step(run)["graphs"]
    report_step(run)
    steps = run.steps
    ok = (par["ok"] and steps["encode"]["verified"] and steps["compress"]["verified"]
          and steps["predict"]["matches_pytorch"] and not any(s["missing"] for s in served.values()))
    result = {"kind": "erpack-demo", "config": asdict(cfg), "out": str(run.paths.root), "model": cfg.model,
              "dataset": cfg.dataset, "layer": par["layer"], "num_layers": par["num_layers"], "steps": steps,
              "seconds": time.perf_counter() - t_all, "ok": ok,
              "machine": describe_machine()}
    (run.paths.root / "demo.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    return result
