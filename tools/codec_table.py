"""Measure every codec on real middle-layer activations and write the table in docs/codecs.md.

Sets (fixed and deterministic): MiniLM (all-MiniLM-L6-v2) at layer 3 and MPNet (all-mpnet-base-v2)
at layer 6, each over
  - Rotten Tomatoes: the first 300 reviews by stable id (rt-NNNNN order), and
  - BBC News: the first 12 articles of each of the 5 labels by stable id (60 articles),
tokenized with the model's tokenizer, truncated at 512 tokens, padding dropped: one (T, H) float32
record per document, the input of layer k (hidden_states[k]).

Prints a human table per set and the targets, then one JSON document as the last line, and
rewrites the part of docs/codecs.md between its `codec-table` markers.

    python tools/codec_table.py                   # everything, about 5 minutes on 2 CPU cores
    python tools/codec_table.py --quick --no-doc  # a smoke run: 30 + 10 documents, MiniLM only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from erpack.codecs import Pipeline  # noqa: E402
from erpack.compress import measure  # noqa: E402

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
MARK_START, MARK_END = "<!-- codec-table:start -->", "<!-- codec-table:end -->"


# ---- the data --------------------------------------------------------------------------------------
def sample(dataset: str, rt_docs: int, bbc_per_label: int):
    from erpack.assets import load_dataset

    records = sorted(load_dataset(dataset), key=lambda r: r.id)
    if dataset == "rotten_tomatoes":
        return records[:rt_docs]
    picked = []
    for label in sorted({r.label for r in records}):
        picked += [r for r in records if r.label == label][:bbc_per_label]
    return picked


def layer_activations(model: str, layer: int, records, batch: int = 16) -> list[np.ndarray]:
    """hidden_states[layer] of each record's non-padding tokens, float32 (T, H), in record order."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from erpack.assets import model_path

    path = model_path(model)
    tok = AutoTokenizer.from_pretrained(path)
    net = AutoModel.from_pretrained(path).eval()
    order = sorted(range(len(records)), key=lambda i: len(records[i].text))  # little padding
    out: list[np.ndarray | None] = [None] * len(records)
    with torch.no_grad():
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            enc = tok([records[i].text for i in idx], padding=True, truncation=True, max_length=MAX_LENGTH,
                      return_tensors="pt")
            hidden = net(**enc, output_hidden_states=True).hidden_states[layer]  # (B, T, H)
            for j, i in enumerate(idx):
                n = int(enc["attention_mask"][j].sum())
                out[i] = hidden[j, :n].numpy().astype(np.float32)
    return out


def load_set(model: str, dataset: str, args) -> list[np.ndarray]:
    """The set's records, computed once and kept as .npy (+ offsets) under --cache-dir."""
    layer = MODELS[model]
    records = sample(dataset, args.rt_docs, args.bbc_per_label)
    cache = Path(args.cache_dir) / f"{model}-k{layer}-{dataset}-{len(records)}"
    acts, offs = cache.with_suffix(".npy"), cache.with_suffix(".offsets.npy")
    if acts.exists() and offs.exists():
        x, off = np.load(acts, allow_pickle=False), np.load(offs, allow_pickle=False)
    else:
        t = time.time()
        arrays = layer_activations(model, layer, records)
        x, off = np.concatenate(arrays), np.cumsum([0] + [len(a) for a in arrays]).astype(np.int64)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(acts, x, allow_pickle=False)
        np.save(offs, off, allow_pickle=False)
        print(f"computed {model} layer {layer} on {dataset}: {x.shape} in {time.time() - t:.0f} s", file=sys.stderr)
    return [x[a:b] for a, b in zip(off[:-1], off[1:])]


# ---- the table -------------------------------------------------------------------------------------
def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        name = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        name = platform.processor() or "unknown CPU"
    return f"{name}, {os.cpu_count()} CPU cores, Python {platform.python_version()}"


def versions() -> str:
    import zstandard

    parts = [f"numpy {np.__version__}", f"zstandard {zstandard.__version__}"]
    try:
        import bitsandbytes
        import torch

        parts += [f"bitsandbytes {bitsandbytes.__version__}", f"torch {torch.__version__}"]
    except ImportError:
        pass
    return ", ".join(parts)


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
            why = []
            short = {r["set"]: r["set"].split(" ")[0] + "/" + ("RT" if "rotten" in r["set"] else "BBC") for r in rs}
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
            result.setdefault(spec, {})[name] = {"ok": not why, "why": why}
    return result


def worst(rows: list[dict], spec: str) -> dict:
    rs = [r for r in rows if r["spec"] == spec]
    return {"bits": max(r["bits_per_value"] for r in rs),
            "sqnr": min((r["sqnr_db"] for r in rs if r["sqnr_db"] is not None), default=None),
            "dec": min(r["batch_decode_MBps"] for r in rs)}


def markdown(result: dict) -> str:
    rows, sets, checks, seconds = result["rows"], result["sets"], result["targets"], result["seconds"]
    took = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
    load = result.get("load_average")
    busy = f" {load[0]} at the start, {load[1]} at the end, on 2 cores" if load else " not recorded"
    lines = [
        f"Measured by `{result['command']}` on {result['machine']} ({result['versions']}), "
        f"{result.get('date', time.strftime('%Y-%m-%d'))}, in {took}. Speeds are MB of fp32 per second of the "
        "measuring thread's CPU time, the best of the passes. `dec` decodes record by record, dropping each array "
        "as a streaming reader does; `batch dec` decodes length-grouped padded batches of 32 records "
        "(`Pipeline.decode_batch`, into reused batch arrays), which is how training, `erpack predict` and "
        "`erpack bench` read the cache, and is what the decode target is checked on. Speeds count real tokens only. "
        f"Load average{busy}: treat speeds as +-20% (this VM's timings drift between runs).",
        "",
        "| set | docs | tokens | mean T | H |",
        "|---|---:|---:|---:|---:|",
    ]
    for s in sets:
        lines.append(f"| {s['name']} | {s['docs']} | {s['tokens']} | {s['tokens'] / s['docs']:.1f} | {s['hidden']} |")
    lines += ["", "Targets, each on all four sets: " + "; ".join(_target_text(n, t) for n, t in TARGETS.items()) + ".", "",
              "| target | pipeline | met | worst bits/value | worst SQNR dB | slowest batch decode MB/s | worst miss |",
              "|---|---|---|---:|---:|---:|---|"]
    for name in TARGETS:
        for spec, met in checks.items():
            if name in met:
                w = worst(rows, spec)
                sq = "exact" if w["sqnr"] is None else f"{w['sqnr']:.2f}"
                lines.append(f"| {name} | `{spec}` | {'yes' if met[name]['ok'] else 'no'} | {w['bits']:.3f} | {sq} | "
                             f"{w['dec']:.0f} | {'; '.join(met[name]['why'])} |")
    for s in sets:
        lines += ["", f"**{s['name']}**", "",
                  "| spec | bits/value | x fp32 | SQNR dB | token cos | enc MB/s | dec MB/s | batch dec MB/s |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in (r for r in rows if r["set"] == s["name"]):
            sqnr = "exact" if r["sqnr_db"] is None else f"{r['sqnr_db']:.2f}"
            lines.append(f"| `{r['spec']}` | {r['bits_per_value']:.3f} | {r['ratio_vs_fp32']:.2f} | {sqnr} | "
                         f"{r['mean_token_cosine']:.5f} | {r['encode_MBps']:.0f} | {r['decode_MBps']:.0f} | "
                         f"{r['batch_decode_MBps']:.0f} |")
    return "\n".join(lines)


def _target_text(name, target) -> str:
    _, bits, sqnr, dec = target
    parts = [f"<= {bits} bits/value" if bits else "", f">= {sqnr} dB" if sqnr else "", f">= {dec:.0f} MB/s batch decode" if dec else ""]
    return f"{name}: " + ", ".join(p for p in parts if p)


def write_doc(path: Path, table_md: str) -> None:
    text = path.read_text() if path.exists() else f"# Codecs\n\n{MARK_START}\n{MARK_END}\n"
    if MARK_START not in text or MARK_END not in text:
        raise SystemExit(f"{path} has no {MARK_START} ... {MARK_END} markers to put the table between")
    head, rest = text.split(MARK_START, 1)
    _, tail = rest.split(MARK_END, 1)
    path.write_text(f"{head}{MARK_START}\n{table_md}\n{MARK_END}{tail}")


def measure_all(args) -> dict:
    """Measure every spec on every set: the whole result, as the JSON line carries it."""
    specs = args.spec or SPECS
    argv = [Path(sys.argv[0]).relative_to(ROOT) if Path(sys.argv[0]).is_absolute() else sys.argv[0], *sys.argv[1:]]
    t_start, load_start = time.time(), os.getloadavg()[0]
    rows, sets = [], []
    for model in args.models.split(","):
        for dataset in ("rotten_tomatoes", "bbc"):
            arrays = load_set(model, dataset, args)
            name = f"{model} k={MODELS[model]} / {dataset}"
            sets.append({"name": name, "model": model, "layer": MODELS[model], "dataset": dataset,
                         "docs": len(arrays), "tokens": int(sum(len(a) for a in arrays)), "hidden": int(arrays[0].shape[1])})
            print(f"measuring {name}", file=sys.stderr, flush=True)
            for spec in specs:
                rows.append({"set": name, **measure(spec, arrays, repeat=args.repeat)})
    return {"command": "python " + " ".join(str(a) for a in argv), "machine": machine(), "versions": versions(),
            "date": time.strftime("%Y-%m-%d"), "seconds": round(time.time() - t_start, 1),
            "load_average": [round(load_start, 1), round(os.getloadavg()[0], 1)], "sets": sets, "rows": rows}


def print_tables(result: dict) -> None:
    for s in result["sets"]:
        print(f"\n{s['name']}: {s['docs']} docs, {s['tokens']} tokens, hidden {s['hidden']}")
        print(f"{'spec':42s} {'bits/val':>8s} {'x fp32':>7s} {'SQNR dB':>8s} {'tok cos':>8s} {'enc MB/s':>9s} {'dec MB/s':>9s} {'batch dec':>9s}")
        for row in (r for r in result["rows"] if r["set"] == s["name"]):
            sqnr = "exact" if row["sqnr_db"] is None else f"{row['sqnr_db']:.2f}"
            print(f"{row['spec']:42s} {row['bits_per_value']:8.3f} {row['ratio_vs_fp32']:7.2f} {sqnr:>8s} "
                  f"{row['mean_token_cosine']:8.5f} {row['encode_MBps']:9.0f} {row['decode_MBps']:9.0f} "
                  f"{row['batch_decode_MBps']:9.0f}")
    print("\ntargets (all sets):")
    for spec, met in result["targets"].items():
        for name, m in met.items():
            print(f"  {name:12s} {spec:42s} {'MET' if m['ok'] else 'missed: ' + '; '.join(m['why'])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="minilm,mpnet", help="comma-separated: minilm, mpnet")
    parser.add_argument("--rt-docs", type=int, default=300, help="first N Rotten Tomatoes reviews by id (300)")
    parser.add_argument("--bbc-per-label", type=int, default=12, help="first N BBC articles of each label by id (12)")
    parser.add_argument("--spec", action="append", metavar="SPEC", help="a pipeline to measure (repeat; default: the list in SPECS)")
    parser.add_argument("--repeat", type=int, default=5, help="timed passes per spec; the fastest is kept (5)")
    parser.add_argument("--cache-dir", default=str(ROOT / "runs" / "codec_table"), help="where activations are kept")
    parser.add_argument("--doc", default=str(ROOT / "docs" / "codecs.md"), help="markdown file to update")
    parser.add_argument("--no-doc", action="store_true", help="print only; leave the doc alone")
    parser.add_argument("--quick", action="store_true", help="smoke run: 30 + 10 documents, MiniLM, repeat 1")
    parser.add_argument("--from-json", metavar="FILE",
                        help="re-render from the output of an earlier run (its last line) instead of measuring")
    args = parser.parse_args()
    if args.quick:
        args.models, args.rt_docs, args.bbc_per_label, args.repeat = "minilm", 30, 2, 1
    if args.from_json:
        result = json.loads(Path(args.from_json).read_text().strip().splitlines()[-1])
    else:
        result = measure_all(args)
    result["targets"] = target_checks(result["rows"])
    print_tables(result)
    if not args.no_doc:
        write_doc(Path(args.doc), markdown(result))
        print(f"wrote the table into {args.doc}", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
