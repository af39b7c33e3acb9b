"""The human card `erpack bench` prints: workload, machine, one row per path, the breakdown, notes."""

from __future__ import annotations

from erpack.runtime.timing import SECTIONS


def _fmt(v, f="{:.2f}", none="-") -> str:
    return none if v is None else f.format(v)


def align(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]


def accuracy_cell(r: dict, trained: bool) -> str:
    if r["accuracy"] is not None:
        return f"{100 * r['accuracy']:.1f}%"
    return "n/a (untrained head)" if not trained else "n/a (no labels)"


def scored_documents(w: dict) -> str:
    """Which documents the accuracy is on: 'the test split (built-in)' or 'all documents'."""
    split = w.get("split")  # bench files written before --split have none
    if split is None:
        return "the first documents of the corpus"
    if split == "all":
        return "all documents (the corpus has no splits)" if w.get("split_source") is None else "all documents"
    return f"the {split} split ({w['split_source']})"


def same_runtime_cell(r: dict) -> str:
    """An erpack path's speedup against the full model in the same runtime, beside the compute bound
    L/(L-k) that applies to that comparison: PyTorch against full PyTorch, ONNX against full ONNX int8."""
    if not r["path"].startswith("erpack"):
        return "-"
    speedup = r["speedup_vs_full_torch"] if r["path"] == "erpack-torch" else r.get("speedup_vs_full_onnx_int8")
    bound = _fmt(r["compute_bound"], "{:.2f}x")
    return f"{_fmt(speedup, '{:.2f}x')} (bound {bound})"


def card(result: dict) -> list[str]:
    w, m = result["workload"], result["machine"]
    lines = [
        f"erpack bench: {w['documents']} documents of {scored_documents(w)} ({w['corpus']}), {w['tokens']} tokens "
        f"({w['tokens_per_document']:.1f} per document), {w['batches']} batches of <= {w['batch_size']}",
        f"model {w['model']}: L={w['num_layers']}, cached layer k={w['layer']}, compute bound L/(L-k) = "
        f"{w['compute_bound']:.2f}x",
        f"machine {m['cpu']}, {m['usable_cores']} cores, torch threads {m['torch_threads']}, load {m['load_average']}, "
        f"{m['time']}",
        f"timing: {result['config']['warmup']} warm-up + {result['config']['repeats']} timed passes per path, "
        f"interleaved, medians; cache {'cold (evicted before each pass)' if result['config']['cold'] else 'warm'}",
        "",
    ]
    trained = w["trained_head"]
    rows = [["path", "codec", "B/token", "docs/s", "tokens/s", "median s", "spread", "vs full-torch",
             "vs full-onnx-int8", "same runtime", "accuracy", "agree"]]
    for r in result["paths"]:
        rows.append([r["path"], r["codec"] or "-", _fmt(r["bytes_per_token"], "{:.0f}"),
                     _fmt(r["documents_per_second"], "{:.1f}"), _fmt(r["tokens_per_second"], "{:.0f}"),
                     _fmt(r["seconds"]["median"], "{:.3f}"), _fmt(100 * r["seconds"]["spread"], "{:.0f}%"),
                     _fmt(r["speedup_vs_full_torch"], "{:.2f}x"), _fmt(r.get("speedup_vs_full_onnx_int8"), "{:.2f}x"),
                     same_runtime_cell(r), accuracy_cell(r, trained), _fmt(r["agreement_with_full_torch"], "{:.3f}")])
    lines += align(rows) + [
        "same runtime: erpack-torch against full-torch, erpack-onnx-* against full-onnx-int8; the bound L/(L-k) is "
        "what skipping the cached layers allows at equal speed per layer (pruned paths can pass it)",
        f"accuracy on {scored_documents(w)}" + ("" if w["trained_head"] else ": n/a, the head is untrained"),
        "", "time per pass, median seconds by section:"]
    sections = [s for s in SECTIONS + ("other",) if any(s in r["breakdown"] for r in result["paths"])]
    rows = [["path", "codec"] + sections + ["total"]]
    for r in result["paths"]:
        rows.append([r["path"], r["codec"] or "-"] + [_fmt(r["breakdown"].get(s), "{:.3f}") for s in sections]
                    + [f"{r['seconds']['median']:.3f}"])
    lines += align(rows)
    t = result.get("training")
    if t:
        lines += ["", f"training, one epoch each ({t['documents']} documents, codec {t['codec']}): from the cache "
                      f"{t['recycled_seconds_per_epoch']:.1f} s, full fine-tune {t['baseline_seconds_per_epoch']:.1f} s: "
                      f"{t['speedup']:.2f}x"]
    if result["notes"]:
        lines += ["", "notes:"] + [f"- {n}" for n in result["notes"]]
    return lines
