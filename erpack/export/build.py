"""`erpack export` as a library call: a task model to a checked ONNX graph, and its optimized/int8 variants.

    s = export_task_model("models/rt", "rt.onnx", optimize=True, quantize="dynamic",
                          calibration_cache="caches/rt")

1. Adapters are merged (PEFT `merge_and_unload`) and the model is cut at its layer.
2. The upper stack (or, with part="lower", embeddings + layers 0..k-1) is exported to a temporary
   file beside the output, with the expected cache in its metadata.
3. onnxruntime runs it on batches of varied shapes (batch 1, equal lengths, padded batches; real
   records too when a cache is given) and compares with PyTorch. Past the tolerance the temporary
   file is deleted and ExportError raised: a file at the output path has always passed.
4. Variants (`<stem>.optimized.onnx`, `<stem>.int8-dynamic.onnx`, `<stem>.int8-static.onnx`) are each
   reported with size, batch-32 latency (median, interleaved with the fp32 graph) and agreement with
   the fp32 graph (max logit difference, share of equal argmax).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from erpack.codecs import Pipeline
from erpack.errors import ExportError
from erpack.export.inputs import cache_batches, cache_records, pad_batch, random_batches, random_token_batches
from erpack.export.metadata import check_cache, set_file_metadata
from erpack.export.onnx_export import FullStack, export_full, export_lower, export_upper
from erpack.export.parity import TOLERANCE, full_parity, graph_agreement, lower_parity, upper_parity
from erpack.export.session import create_session
from erpack.export.summary import ExportSummary, Variant
from erpack.runtime.lower import wants_token_types
from erpack.runtime.progress import Steps
from erpack.runtime.timing import interleaved_medians
from erpack.store import CacheReader
from erpack.store.atomic import check_output, clean_leftovers, fsync_file, publish
from erpack.tasks import per_token

PARTS = ("upper", "lower", "full")
INT8_EXCLUDE = ("auto", "none")
AGREEMENT_WARNING = 0.98  # below this share of equal argmax a variant gets a warning note


def merge_adapters(model):
    """The model with PEFT adapters folded into its weights (the model itself when it has none)."""
    if hasattr(model, "merge_and_unload"):  # a peft.PeftModel
        return model.merge_and_unload()
    return model


def _task_model(task_model):
    from erpack.train import TaskModel

    if isinstance(task_model, TaskModel):
        tm = task_model
    else:
        tm = TaskModel.load(task_model)
    merged = merge_adapters(tm.model)
    if merged is not tm.model:
        tm = TaskModel(merged, tm.info)
    tm.model.eval()
    return tm


def _part_for(tm, part: str | None, source) -> str:
    """The part to export: a text-input model (a baseline) only whole, from token ids."""
    if tm.input != "text":
        return part or "upper"
    if part not in (None, "full"):
        raise ExportError(f"task model {source} computes from text (input \"text\": a baseline, every layer "
                          f"tuned), so its {part} stack does not fit a cache of the pretrained encoder; export it "
                          "with --part full (token ids -> logits)")
    return "full"


def _info(tm, source) -> dict:
    cache = dict(tm.expected_cache)
    if "codec_spec" not in cache and cache.get("codec"):
        cache["codec_spec"] = Pipeline.from_config(cache["codec"]).spec
    info = {"cache": cache, "task": tm.task, "labels": tm.labels, "mode": tm.mode, "variant": "fp32",
            "task_model": str(source) if not hasattr(source, "info") else None}
    if per_token(info):  # how predict turns the graph's token logits into one prediction per word
        info["subwords"] = tm.info.get("subwords") or "first"
    return info


def _variant_path(out: Path, name: str) -> Path:
    return out.with_name(f"{out.stem}.{name}{out.suffix or '.onnx'}")


def _variants(optimize: bool, quantize: str | None) -> list[str]:
    return (["optimized"] if optimize else []) + ([f"int8-{quantize}"] if quantize else [])


def _temp_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.partial-{os.getpid()}")


def _checked_export(write, check, out: Path) -> dict:
    """Write to a temporary file, check it, move it into place; on failure delete it and raise."""
    tmp = _temp_path(out)
    try:
        write(tmp)
        report = check(tmp)
        if not report.passed:
            raise ExportError(f"{out}: the ONNX graph differs from PyTorch by {report.max_diff:.3e} (tolerance "
                              f"{report.tolerance:.0e}; {report.summary()}); the file was not written. Try "
                              "--exporter dynamo, or report the model type as a bug")
        set_file_metadata(tmp, {"parity": report.as_dict()})
        fsync_file(tmp)
        publish(tmp, out)
        return report.as_dict()
    finally:
        tmp.unlink(missing_ok=True)


def _sample_batches(tm, reader, hidden_size: int) -> tuple[list, list, tuple]:
    """(parity batches, agreement batches, timing batch of 32)."""
    max_len = tm.expected_cache.get("max_length") or 64
    parity = random_batches(hidden_size, max_tokens=max_len)
    if reader is None:
        rng = np.random.default_rng(1)
        agree = [pad_batch([rng.standard_normal((n, hidden_size)).astype(np.float32)
                            for n in rng.integers(4, min(48, max_len) + 1, 32)]) for _ in range(4)]
        return parity, agree, agree[0]
    parity += cache_batches(reader, limit=32, batch_size=8)
    ids = reader.ids()
    agree = cache_batches(reader, limit=256, batch_size=32, ids=ids[len(ids) // 2:] or ids)
    timing = pad_batch(cache_records(reader, 32))
    return parity, agree, timing


def _check_request(part, quantize, int8_exclude: str, calibration_cache, out: Path) -> None:
    """Refuse a request that cannot be exported, before any work."""
    if part not in PARTS + (None,):
        raise ExportError(f"unknown part {part!r}; use {', '.join(PARTS)}")
    if quantize not in (None, "dynamic", "static"):
        raise ExportError(f"unknown quantization {quantize!r}; use dynamic or static")
    if part == "lower" and quantize:
        raise ExportError("--quantize applies to the upper stack: the lower graph's output goes into the cache, "
                          "whose codec (erpack encode --codec) does the quantizing")
    if part == "full" and quantize:
        raise ExportError("--quantize applies to the upper stack; export the full model without it")
    if int8_exclude not in INT8_EXCLUDE:
        raise ExportError(f"unknown int8 exclusion rule {int8_exclude!r}; use auto or none")
    if quantize == "static" and calibration_cache is None:
        raise ExportError("--quantize static needs --calibration-cache CACHE: the activation ranges are "
                          "calibrated on cached records of the task's corpus")
    if out.suffix != ".onnx":
        raise ExportError(f"output {out} must end in .onnx")


def _free_outputs(out: Path, optimize: bool, quantize, overwrite: bool) -> None:
    """Clean what a killed export left at the output and its variants; refuse existing ones unless overwrite."""
    for path in [out] + [_variant_path(out, v) for v in _variants(optimize, quantize)]:
        if out.parent.is_dir():
            clean_leftovers(path)  # `.NAME.partial-PID` files an earlier, killed export left
        check_output(path, overwrite, "export output")


def _step_count(part: str | None, variants: list) -> int:
    """Load, export and check, then each variant (and its timing, for the upper stack)."""
    return 2 + len(variants) * (1 if part in ("lower", "full") else 2)


def export_task_model(task_model, output, part: str | None = "upper", optimize: bool = False, quantize: str | None = None,
                      calibration_cache=None, tolerance: float = TOLERANCE, exporter: str = "legacy",
                      allow_other_codec: bool = False, calibration_docs: int = 256, timing_runs: int = 10,
                      int8_exclude: str = "auto", overwrite: bool = False, progress=None,
                      ode_steps: int | None = None) -> ExportSummary:
    """Export, check and vary a task model (folder or TaskModel); returns an ExportSummary (see module doc).

    part: "upper" (from cached states), "lower" (token ids -> cached states), "full" (token ids ->
    logits); None picks "full" for a model that computes from text (a baseline), else "upper".

    `progress(total=..., desc=..., unit=...)` makes a tqdm-like bar over the steps (load, export and
    check, each variant, its measuring), named as each starts.

    Each file is written beside its place, checked, fsynced and renamed into it; an existing output
    (or variant) is refused before any work unless overwrite. `ode_steps`: a task model with a shared upper
    block, exported as that many ODE steps unrolled (erpack.depth.ode; the metadata records "ode").
    """
    out = Path(output)
    _check_request(part, quantize, int8_exclude, calibration_cache, out)
    _free_outputs(out, optimize, quantize, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    variants = _variants(optimize, quantize)
    steps = Steps(progress, _step_count(part, variants), desc="export")
    steps.start("load the task model")
    tm = _task_model(task_model)
    part = _part_for(tm, part, task_model)
    steps.total(_step_count(part, variants))
    info = _info(tm, task_model)
    if ode_steps is not None:
        _ode_steps(tm, part, ode_steps, info)
    reader = CacheReader(calibration_cache) if calibration_cache is not None else None
    try:
        steps.start(f"export the {part} stack and check it against PyTorch")
        notes = [] if reader is None else check_cache(info, reader, f"task model {task_model}", allow_other_codec)
        summary = ExportSummary(str(out), part, tm.layer, info["cache"]["model"].get("name"), tm.task, exporter, notes)
        if part in ("lower", "full"):
            return _export_from_tokens(tm, part, out, info, summary, exporter, optimize, tolerance, steps)
        return _export_upper_stack(tm, out, info, summary, reader, steps, optimize=optimize, quantize=quantize,
                                   tolerance=tolerance, calibration_docs=calibration_docs,
                                   int8_exclude=int8_exclude, timing_runs=timing_runs)
    finally:
        steps.close()
        if reader is not None:
            reader.close()


def _ode_steps(tm, part: str, steps: int, info: dict) -> None:
    """Make `tm.upper` the S-step ODE stack (one graph per S, unrolled: docs/results/ode-steps.md)."""
    from erpack.depth.ode import graph_record, ode_upper

    if part != "upper":
        raise ExportError(f"--steps applies to the upper stack, not --part {part}")
    tm.upper = ode_upper(tm, steps)
    info["ode"] = graph_record(tm, tm.upper)


def _export_upper_stack(tm, out: Path, info: dict, summary: ExportSummary, reader, steps, *, optimize: bool,
                        quantize: str | None, tolerance: float, calibration_docs: int, int8_exclude: str,
                        timing_runs: int) -> ExportSummary:
    """The upper stack (cached states in), checked on random and cached batches; then its variants, each
    compared with it and timed against it; `summary` filled in."""
    cfg = tm.model.config
    hidden_size = getattr(cfg, "hidden_size", None) or cfg.dim
    parity_batches, agree_batches, timing_batch = _sample_batches(tm, reader, hidden_size)

    def check(p):
        return upper_parity(tm.upper, create_session(p, "cpu"), parity_batches, tolerance)

    summary.parity = _checked_export(
        lambda p: export_upper(tm.upper, p, hidden_size, info, exporter=summary.exporter), check, out)
    summary.bytes = out.stat().st_size
    source = out
    if optimize:
        steps.start("optimize")
        summary.variants.append(_optimized(tm, out, hidden_size, cfg, tolerance, check))
        source = Path(summary.variants[-1].path)
    if quantize:  # static from the fp32 graph: calibration cannot see into fused operators
        steps.start(f"quantize ({quantize})")
        summary.variants.append(_quantized(quantize, source if quantize == "dynamic" else out, out, reader,
                                           calibration_docs, int8_exclude))
    base = create_session(out, "cpu")
    for v in summary.variants:
        steps.start(f"time and compare {v.variant}")
        _measure(v, base, out, agree_batches, timing_batch, timing_runs)
        note = _agreement_note(v, "cached" if reader is not None else "random")
        if note:
            summary.notes.append(note)
    return summary


def _export_from_tokens(tm, part: str, out: Path, info: dict, summary: ExportSummary, exporter: str, optimize: bool,
                        tolerance: float, steps) -> ExportSummary:
    """The lower stack or the full model (token ids in), checked on random token batches; `summary` filled in."""
    cfg = tm.model.config
    module = tm.lower if part == "lower" else FullStack(tm.model)
    batches = random_token_batches(getattr(cfg, "vocab_size", 100), with_token_types=wants_token_types(module),
                                   first_id=3)
    write = export_lower if part == "lower" else export_full
    parity = lower_parity if part == "lower" else full_parity

    def check(p):
        return parity(module, create_session(p, "cpu"), batches, tolerance)

    summary.parity = _checked_export(lambda p: write(module, p, info, exporter=exporter), check, out)
    summary.bytes = out.stat().st_size
    if optimize:
        steps.start("optimize")
        summary.variants.append(_optimized(tm, out, getattr(cfg, "hidden_size", None) or cfg.dim, cfg, tolerance,
                                           check))
    return summary


def _agreement_note(v: Variant, inputs: str) -> str | None:
    """A warning when a variant's outputs stray from the fp32 graph's: class changes, or a regression
    score's Pearson r below AGREEMENT_WARNING."""
    a = v.agreement
    if a["argmax_agreement"] is not None and a["argmax_agreement"] < AGREEMENT_WARNING:
        rows = f"{a['rows']} tokens of {inputs} inputs" if a.get("tokens") else f"{a['rows']} {inputs} inputs"
        return (f"{v.variant} changes the predicted class of {100 * (1 - a['argmax_agreement']):.1f}% of "
                f"{rows}: measure its accuracy before deploying it (tools/export_bench.py)")
    if a.get("pearson") is not None and a["pearson"] < AGREEMENT_WARNING:
        return (f"{v.variant}'s scores correlate with the fp32 graph's at Pearson r {a['pearson']:.3f} on "
                f"{a['rows']} {inputs} inputs: measure its accuracy before deploying it (tools/export_bench.py)")
    return None


def _optimized(tm, out: Path, hidden_size: int, cfg, tolerance: float, check) -> Variant:
    from erpack.export.optimize import optimize_graph

    dst = _variant_path(out, "optimized")
    heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_heads", 0)
    uniform = len({len(layer["heads"]) for layer in (getattr(cfg, "erpack_pruning", None) or {}).get("layers", [])}
                  | {heads}) == 1
    fused: dict = {}

    def write(p):
        fused.update(optimize_graph(out, p, cfg.model_type, heads, hidden_size, fuse_attention=uniform))
        set_file_metadata(p, {"variant": "optimized", "derived_from": out.name, "optimizer": dict(fused)})

    parity = _checked_export(write, check, dst)
    return Variant("optimized", str(dst), dst.stat().st_size, parity=parity, details=fused)


def exclusion_batches(reader, calibration_docs: int = 256) -> list:
    """What the int8 exclusion rule (`--int8-exclude auto`) measures agreement on: up to 128 records of the
    first half of the cache (the agreement report uses the second half), batches of 16; the upper graph's
    and, per layer, the exit graphs' (erpack.depth.onnx.quantize_layers)."""
    ids = reader.ids()
    return cache_batches(reader, limit=min(calibration_docs, 128), batch_size=16, ids=ids[: len(ids) // 2] or ids)


def _quantized(mode: str, source: Path, out: Path, reader, calibration_docs: int, exclude: str = "auto") -> Variant:
    from erpack.export.quantize import (
        CacheCalibration,
        quantize_dynamic_graph,
        quantize_static_graph,
        sensitive_nodes,
    )

    dst = _variant_path(out, f"int8-{mode}")
    tmp = _temp_path(dst)
    try:
        if mode == "dynamic" and exclude == "auto" and reader is not None:
            details = sensitive_nodes(source, tmp, exclusion_batches(reader, calibration_docs))
        elif mode == "dynamic":
            details = quantize_dynamic_graph(source, tmp)
        else:
            ids = reader.ids()
            details = quantize_static_graph(source, tmp, CacheCalibration(reader, calibration_docs,
                                                                           ids=ids[: len(ids) // 2] or ids))
        set_file_metadata(tmp, {"variant": f"int8-{mode}", "derived_from": source.name, "quantization": details})
        fsync_file(tmp)
        publish(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return Variant(f"int8-{mode}", str(dst), dst.stat().st_size, details=details)


def _measure(v: Variant, base, out: Path, agree_batches, timing_batch, runs: int) -> None:
    """Agreement with the fp32 graph, and batch-32 latency against it (interleaved medians)."""
    s = create_session(v.path, "cpu")
    v.agreement = graph_agreement(base, s, agree_batches)
    hidden, mask = timing_batch
    feeds = {"hidden_states": hidden, "attention_mask": mask}
    t = interleaved_medians({"fp32": lambda: base.run(feeds), "variant": lambda: s.run(feeds)}, runs=runs)
    v.timing = {"batch": list(hidden.shape[:2]), "fp32_ms": t["fp32"]["median_ms"],
                "variant_ms": t["variant"]["median_ms"], "speedup": t["fp32"]["median_ms"] / t["variant"]["median_ms"],
                "runs": runs}
    v.size_ratio = out.stat().st_size / v.bytes
