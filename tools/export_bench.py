"""Benchmark the exported upper stack against PyTorch: size, batch-32 latency, test accuracy.

    python tools/export_bench.py --task-model runs/export/tm-minilm-k3 --cache runs/export/rt-minilm-k3 \
        --labels rotten_tomatoes --split test --out runs/export/bench-minilm

Exports the task model (fp32, optimized, int8 dynamic from the optimized graph, int8 static calibrated
on training-split records), then times every variant and the PyTorch upper stack on the same padded
batch of 32 test documents (median-length batch of the test split's length plan), interleaved
A, B, C, ... and medians taken so load from other processes hurts all alike; then runs each over the
whole split for accuracy and agreement with the fp32 graph. Prints a table, then one JSON document as
the last line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task-model", required=True)
    p.add_argument("--cache", required=True)
    p.add_argument("--labels", default="rotten_tomatoes")
    p.add_argument("--split", default="test")
    p.add_argument("--out", required=True, help="folder for the graphs")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--calibration-docs", type=int, default=256)
    p.add_argument("--skip-static", action="store_true")
    p.add_argument("--threads", type=int, default=None,
                   help="torch and onnxruntime intra-op threads (default: each library's own choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import transformers

    transformers.logging.set_verbosity_error()
    from erpack.batching import length_batches
    from erpack.experiments.page import machine_line
    from erpack.export import create_session, export_task_model
    from erpack.export.inputs import pad_batch
    from erpack.export.metadata import set_file_metadata
    from erpack.export.quantize import CacheCalibration, quantize_static_graph
    from erpack.runtime.timing import describe_machine, interleaved_medians
    from erpack.store import CacheReader
    from erpack.train import TaskModel
    from erpack.train.labels import read_labels

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    graph = out / "upper.onnx"
    t0 = time.perf_counter()
    tm = TaskModel.load(args.task_model)
    s = export_task_model(tm, graph, optimize=True, quantize="dynamic", calibration_cache=args.cache, timing_runs=3,
                          overwrite=True)  # the tool's own output folder: a rerun replaces it
    paths = {"onnx fp32": graph}
    paths.update({f"onnx {v.variant}": Path(v.path) for v in s.variants})
    rows = read_labels(args.labels)
    with CacheReader(args.cache) as reader:
        test = [r for r in rows if r.split == args.split and r.id in reader]
        train_ids = [r.id for r in rows if r.split == "train" and r.id in reader]
        if not args.skip_static:
            static = out / "upper.int8-static.onnx"
            quantize_static_graph(graph, static, CacheCalibration(reader, args.calibration_docs, ids=train_ids))
            set_file_metadata(static, {"variant": "int8-static", "derived_from": graph.name})
            paths["onnx int8-static"] = static
        records = [reader.get(r.id) for r in test]
    export_seconds = time.perf_counter() - t0
    names = tm.labels
    y = np.array([names.index(str(r.label)) for r in test])
    plan = length_batches([len(a) for a in records], args.batch_size)
    full = [b for b in plan if len(b) == args.batch_size]
    timing_rows = full[len(full) // 2]
    hidden, mask = pad_batch([records[i] for i in timing_rows])  # (32, T, H), (32, T)

    sessions = {name: create_session(path, "cpu", threads=args.threads) for name, path in paths.items()}
    upper = tm.upper.eval()
    h_t, m_t = torch.from_numpy(hidden), torch.from_numpy(mask)
    feeds = {"hidden_states": hidden, "attention_mask": mask}

    def torch_run():
        with torch.no_grad():
            upper(h_t, m_t)

    fns = {"pytorch fp32": torch_run}
    fns.update({name: (lambda s=s: s.run(feeds)) for name, s in sessions.items()})
    timing = interleaved_medians(fns, runs=args.runs, warmup=3)

    def logits_of(run) -> np.ndarray:
        z = np.zeros((len(records), len(names)), dtype=np.float32)
        for b in plan:
            h, m = pad_batch([records[i] for i in b])
            z[b] = run(h, m)
        return z

    with torch.no_grad():
        ref = logits_of(lambda h, m: upper(torch.from_numpy(h), torch.from_numpy(m)).numpy())
    logits = {"pytorch fp32": ref}
    for name, sess in sessions.items():
        logits[name] = logits_of(lambda h, m, sess=sess: sess.run({"hidden_states": h, "attention_mask": m})[0])
    base = logits["onnx fp32"]
    results = []
    for name, z in logits.items():
        path = paths.get(name)
        results.append({
            "variant": name, "bytes": path.stat().st_size if path else None,
            "median_ms": timing[name]["median_ms"], "min_ms": timing[name]["min_ms"],
            "speedup_vs_pytorch": timing["pytorch fp32"]["median_ms"] / timing[name]["median_ms"],
            "accuracy": float((z.argmax(1) == y).mean()),
            "max_logit_diff_vs_onnx_fp32": float(np.abs(z - base).max()),
            "argmax_agreement_vs_onnx_fp32": float((z.argmax(1) == base.argmax(1)).mean()),
            "provider": sessions[name].provider if name in sessions else "torch",
        })
    acc32 = next(r["accuracy"] for r in results if r["variant"] == "onnx fp32")
    cfg = tm.model.config
    meta = {"task_model": args.task_model, "cache": args.cache, "out": args.out, "model": tm.expected_cache["model"]["name"],
            "layer": tm.layer, "num_layers": getattr(cfg, "num_hidden_layers", None),
            "hidden_size": getattr(cfg, "hidden_size", None), "split": args.split, "documents": len(records),
            "timing_batch": list(hidden.shape[:2]), "runs": args.runs, "parity_max_diff": s.parity["max_diff"],
            "optimizer_fused": s.variant("optimized").details["fused"] if s.variant("optimized") else None,
            "machine": describe_machine(args.threads), "export_seconds": export_seconds}
    print(f"{meta['model']} k={meta['layer']} upper stack ({meta['num_layers'] - meta['layer']} layers + head), "
          f"{meta['split']} split {len(records)} docs; timing batch {hidden.shape[0]}x{hidden.shape[1]} tokens, "
          f"median of {args.runs} interleaved runs, {machine_line(meta['machine'])}")
    print(f"parity fp32 graph vs PyTorch: {meta['parity_max_diff']:.2e}; optimizer fused {meta['optimizer_fused']}")
    print(f"{'variant':<18} {'MB':>7} {'ms/batch':>9} {'x PyTorch':>9} {'accuracy':>9} {'d acc pts':>9} "
          f"{'agree':>7} {'max|dz|':>9}")
    for r in results:
        mb = f"{r['bytes'] / 1e6:.2f}" if r["bytes"] else "-"
        print(f"{r['variant']:<18} {mb:>7} {r['median_ms']:>9.1f} {r['speedup_vs_pytorch']:>9.2f} "
              f"{100 * r['accuracy']:>9.2f} {100 * (r['accuracy'] - acc32):>+9.2f} "
              f"{100 * r['argmax_agreement_vs_onnx_fp32']:>6.1f}% {r['max_logit_diff_vs_onnx_fp32']:>9.2e}")
    print(json.dumps({"meta": meta, "results": results}))


if __name__ == "__main__":
    main()
