"""What `erpack bench` measured: one result per path (times, breakdown, speed, accuracy), the workload,
and the whole run as a BenchResult whose `as_dict()` is the JSON document (docs/benchmarks.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from erpack.bench.documents import BenchDocuments
from erpack.runtime.timing import SECTIONS, summarize


@dataclass
class BenchResult:
    """What `erpack bench` measured; `as_dict()` is the JSON document (docs/benchmarks.md)."""

    command: str | None
    config: dict
    machine: dict
    workload: dict
    caches: list[dict]
    pruned: dict | None
    quantization: dict
    paths: list[dict]
    training: dict | None
    notes: list[str]
    seconds: float
    kind: str = "erpack-bench"
    version: int = 1

    def as_dict(self) -> dict:
        d = asdict(self)
        return {key: d[key] for key in ("kind", "version", "command", "config", "machine", "workload", "caches",
                                         "pruned", "quantization", "paths", "training", "notes", "seconds")}


def true_classes(docs: BenchDocuments, classes: list[str], trained: bool) -> np.ndarray | None:
    """Class index of each document's label, when the head is trained and every document has a known label."""
    if not trained or not all(d.id in docs.labels for d in docs.docs):
        return None
    index = {c: j for j, c in enumerate(classes)}
    if not all(docs.labels[d.id] in index for d in docs.docs):
        return None
    return np.array([index[docs.labels[d.id]] for d in docs.docs])


def with_speedups(results: list[dict]) -> list[dict]:
    """Each path's speedup against the full PyTorch model and the full int8 ONNX graph (where run)."""
    base = next((r for r in results if r["path"] == "full-torch"), None)
    onnx = next((r for r in results if r["path"] == "full-onnx-int8"), None)
    for r in results:
        r["speedup_vs_full_torch"] = base["seconds"]["median"] / r["seconds"]["median"] if base else None
        r["speedup_vs_full_onnx_int8"] = onnx["seconds"]["median"] / r["seconds"]["median"] if onnx else None
    return results


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
    for key in ("mean_layers", "mean_layers_fraction"):  # erpack-exit-int8: upper layers run per document
        if key in d:
            out[key] = d[key]
    return out
