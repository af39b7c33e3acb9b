"""Every codec measured on real middle-layer activations (tools/codec_table.py, docs/results/codecs.md).

    arrays = load_set("minilm", "bbc", rt_docs=300, bbc_per_label=12, cache_dir=Path("runs/codec_table"))
    result = measure_all(["minilm"], SPECS, rt_docs=300, bbc_per_label=12, cache_dir=..., repeat=5, command=...)
    result["targets"] = target_checks(result["rows"])

Sets (fixed and deterministic): MiniLM at layer 3 and MPNet at layer 6, each over the first N Rotten
Tomatoes reviews by id and the first M BBC articles of each label by id, tokenized as `erpack encode`
tokenizes (erpack.tokens, max length 512) and run through the model's lower stack (split_model, as
encode runs it): one (T, H) float32 array per document, padding dropped, the input of layer k.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from erpack.assets import load_dataset, resolve_model, subset
from erpack.codecs import Pipeline
from erpack.compress import measure
from erpack.corpus import Document
from erpack.runtime.lower import run_lower
from erpack.runtime.timing import describe_machine
from erpack.tokens import tokenize

MODELS = {"minilm": 3, "mpnet": 6}  # model -> layer k (the middle of 6 and 12 layers)
MAX_LENGTH = 512
SPECS = [
    "fp32", "lossless", "fp16", "fp16+shuffle:2+zstd:level=3,streams=2", "bf16", "bf16+shuffle:2+zstd",
    "bf16z", "int8", "int8+zstd", "bnb8", "bnb8+zstd", "int8c", "int8z", "int4:g=32", "int4:g=32+zstd",
    "int4:g=32,asym=1+zstd", "nf4", "nf4+zstd", "fp4", "int4c", "int4z",
]
# target name -> (array codecs it covers, max bits per value, min SQNR dB, min batch decode MB/s)
TARGETS = {
    "int8": (("int8", "int8c", "bnb8"), 7.2, 40.0, None),
    "4-bit": (("int4", "int4c", "nf4", "fp4"), 3.8, 18.0, None),
    "bf16": (("bf16",), 11.5, None, None),
    "int8 decode": (("int8", "int8c", "bnb8"), None, None, 1000.0),
}


def sample(dataset: str, rt_docs: int, bbc_per_label: int):
    """The set's records: the first rt_docs reviews by id, or the first bbc_per_label articles of each label."""

    records = load_dataset(dataset)
    if dataset == "rotten_tomatoes":
        return subset(records, order="id")[:rt_docs]
    labels = sorted({r.label for r in records})
    picked = subset(records, dict.fromkeys(labels, bbc_per_label), order="id", by="label")
    return sorted(picked, key=lambda r: (labels.index(r.label), r.id))


def layer_activations(model: str, layer: int, records, batch: int = 16, with_ids: bool = False):
    """The lower stack's output (the input of layer `layer`) for each record's tokens, float32 (T, H), in
    record order: the arrays `erpack encode` would store; with_ids: (arrays, token ids int64 (T,) each)."""
    from erpack.models import load_model, split_model

    loaded = load_model(model)
    lower, _ = split_model(loaded.model, layer)
    encoded, _ = tokenize(loaded.tokenizer, [Document(r.id, r.text) for r in records], MAX_LENGTH)
    arrays = run_lower(lower, encoded, loaded.tokenizer.pad_token_id or 0, "cpu", batch, 16384)
    return (arrays, [np.asarray(e["input_ids"], np.int64) for e in encoded]) if with_ids else arrays


def token_ids(model: str, records) -> list[np.ndarray]:
    """Each record's token ids (int64 (T,)) as `erpack encode` tokenizes it, without running the model."""
    from transformers import AutoTokenizer


    encoded, _ = tokenize(AutoTokenizer.from_pretrained(resolve_model(model)), [Document(r.id, r.text) for r in records], MAX_LENGTH)
    return [np.asarray(e["input_ids"], np.int64) for e in encoded]


def load_set(model: str, dataset: str, rt_docs: int, bbc_per_label: int, cache_dir: Path,
             log=lambda text: None) -> list[np.ndarray]:
    """The set's arrays, computed once and kept as .npy (+ offsets) under `cache_dir`."""
    return [x for x, _ in load_records(model, sample(dataset, rt_docs, bbc_per_label),
                                       Path(cache_dir) / f"{model}-k{MODELS[model]}-{dataset}-", log, ids=False)]


def load_records(model: str, records, stem: Path, log=lambda text: None, ids: bool = True):
    """[(x float32 (T, H), token ids int64 (T,) or None)] of `records` at the model's layer, kept under
    `<stem><len(records)>` as .npy, .offsets.npy and .ids.npy (the ids from the tokenizer alone when the
    activations were kept without them)."""
    layer = MODELS[model]
    cache = Path(f"{stem}{len(records)}")
    acts, offs, idf = (cache.with_suffix(s) for s in (".npy", ".offsets.npy", ".ids.npy"))
    if acts.exists() and offs.exists():
        x, off = np.load(acts, allow_pickle=False), np.load(offs, allow_pickle=False)
        if ids and not idf.exists():
            tok = token_ids(model, records)
            if [len(t) for t in tok] != np.diff(off).tolist():
                raise RuntimeError(f"{acts}: kept activations do not match the tokenizer's lengths; delete them")
            np.save(idf, np.concatenate(tok).astype(np.int64), allow_pickle=False)
    else:
        t = time.time()
        arrays, tok = layer_activations(model, layer, records, with_ids=True)
        x, off = np.concatenate(arrays), np.cumsum([0] + [len(a) for a in arrays]).astype(np.int64)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(acts, x, allow_pickle=False)
        np.save(idf, np.concatenate(tok).astype(np.int64), allow_pickle=False)
        np.save(offs, off, allow_pickle=False)
        log(f"computed {model} layer {layer} on {cache.name}: {x.shape} in {time.time() - t:.0f} s")
    t_ids = np.load(idf, allow_pickle=False) if ids else None
    return [(x[a:b], None if t_ids is None else t_ids[a:b]) for a, b in zip(off[:-1], off[1:])]


def versions() -> str:
    """The versions the speeds depend on: numpy, zstandard, and bitsandbytes and torch where installed."""
    import zstandard

    parts = [f"numpy {np.__version__}", f"zstandard {zstandard.__version__}"]
    try:
        import bitsandbytes
        import torch

        parts += [f"bitsandbytes {bitsandbytes.__version__}", f"torch {torch.__version__}"]
    except ImportError:
        pass
    return ", ".join(parts)


def machine() -> str:
    """CPU model, cores and Python of this machine, from erpack.runtime.timing.describe_machine."""

    m = describe_machine()
    return f"{m['cpu']}, {m['cores']} CPU cores, Python {m['python']}"


def measure_all(models: list[str], specs: list[str], rt_docs: int, bbc_per_label: int, cache_dir: Path,
                repeat: int, command: str, log=lambda text: None) -> dict:
    """Measure every spec on every set: the whole result, as the tool's JSON line carries it."""

    t_start, load_start = time.time(), os.getloadavg()[0]
    rows, sets = [], []
    for model in models:
        for dataset in ("rotten_tomatoes", "bbc"):
            arrays = load_set(model, dataset, rt_docs, bbc_per_label, cache_dir, log)
            name = f"{model} k={MODELS[model]} / {dataset}"
            sets.append({"name": name, "model": model, "layer": MODELS[model], "dataset": dataset,
                         "docs": len(arrays), "tokens": int(sum(len(a) for a in arrays)), "hidden": int(arrays[0].shape[1])})
            log(f"measuring {name}")
            for spec in specs:
                rows.append({"set": name, **measure(spec, arrays, repeat=repeat).as_dict()})
    return {"command": command, "machine": machine(), "versions": versions(),
            "date": time.strftime("%Y-%m-%d"), "seconds": round(time.time() - t_start, 1),
            "load_average": [round(load_start, 1), round(os.getloadavg()[0], 1)], "sets": sets, "rows": rows}


def target_checks(rows: list[dict]) -> dict:
    """spec -> target -> {"ok": met on every set, "why": what missed where}."""

    by_spec: dict[str, list[dict]] = {}
    for r in rows:
        by_spec.setdefault(r["spec"], []).append(r)
    result: dict[str, dict] = {}
    for spec, rs in by_spec.items():
        stages = [st.codec_id for st in Pipeline.from_spec(spec).stages]
        for name, (codecs, bits, sqnr, dec) in TARGETS.items():
            if stages[0] not in codecs or (dec is not None and "zstd" not in stages):  # decode target: int8 + zstd
                continue
            result.setdefault(spec, {})[name] = {"ok": not (why := _misses(rs, bits, sqnr, dec)), "why": why}
    return result


def _misses(rs: list[dict], bits, sqnr, dec) -> list[str]:
    """What of a target the rows of one spec miss, each with the set that misses it."""
    short = {r["set"]: r["set"].split(" ")[0] + "/" + ("RT" if "rotten" in r["set"] else "BBC") for r in rs}
    why = []
    if bits is not None and max(r["bits_per_value"] for r in rs) > bits:
        r = max(rs, key=lambda r: r["bits_per_value"])
        why.append(f"{r['bits_per_value']:.2f} bits ({short[r['set']]})")
    lossy = [r for r in rs if r["sqnr_db"] is not None]
    if sqnr is not None and lossy and min(r["sqnr_db"] for r in lossy) < sqnr:
        r = min(lossy, key=lambda r: r["sqnr_db"])
        why.append(f"{r['sqnr_db']:.1f} dB ({short[r['set']]})")
    if dec is not None and min(r["batch_decode_MBps"] for r in rs) < dec:
        r = min(rs, key=lambda r: r["batch_decode_MBps"])
        why.append(f"{r['batch_decode_MBps']:.0f} MB/s ({short[r['set']]})")
    return why


def worst(rows: list[dict], spec: str) -> dict:
    """The worst bits per value, SQNR and batch decode speed of `spec` over the sets."""
    rs = [r for r in rows if r["spec"] == spec]
    return {"bits": max(r["bits_per_value"] for r in rs),
            "sqnr": min((r["sqnr_db"] for r in rs if r["sqnr_db"] is not None), default=None),
            "dec": min(r["batch_decode_MBps"] for r in rs)}
