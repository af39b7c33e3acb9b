"""The deployment a user who skips recycling would make: the FULL task model (embeddings + all L layers
+ head) exported with optimum and int8-quantized with ORTQuantizer, for the benchmark to compare with
erpack's upper-stack graphs.

Runs in the `optimum` environment (transformers 4.57; optimum-onnx requires <4.58), not the main one:

    /tmp/venv-opt/bin/python tools/optimum_full_export.py --task-model runs/export/tm-minilm-k3 \
        --out runs/export/optimum-minilm --labels rotten_tomatoes --split test

The task model folder (save_pretrained style, written by `erpack train`) is staged with the encoder's
tokenizer, exported by `optimum.exporters.onnx.main_export` (task text-classification, with optimum's
own validation), quantized dynamically (per-channel int8, AVX2 config) by `ORTQuantizer`, then:
parity of the fp32 graph with transformers, batch-32 latency (median of interleaved runs over the same
median-length batch of the split), and accuracy on the split, for transformers, ONNX fp32 and ONNX int8.
Prints a table, then one JSON document as the last line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _stage(task_model: Path, tokenizer_from: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(task_model / name, folder / name)
    for f in Path(tokenizer_from).iterdir():
        if f.name.startswith(("tokenizer", "vocab", "special_tokens", "merges")) and f.is_file():
            shutil.copy(f, folder / f.name)
    return folder


def _medians(fns: dict, runs: int) -> dict:
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task-model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--labels", default="rotten_tomatoes")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=None, help="score the first N documents of the split only")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args()

    import transformers
    from optimum.exporters.onnx import main_export
    from optimum.onnxruntime import ORTModelForSequenceClassification, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from erpack.assets import resolve_model
    from erpack.batching import length_batches
    from erpack.experiments.page import machine_line
    from erpack.models.loading import recorded_location
    from erpack.runtime.timing import describe_machine
    from erpack.train.labels import read_labels

    transformers.logging.set_verbosity_error()
    task = json.loads((Path(args.task_model) / "erpack_task.json").read_text())
    out = Path(args.out)
    fp32_dir, int8_dir = out / "fp32", out / "int8"
    with tempfile.TemporaryDirectory() as tmp:
        staged = _stage(Path(args.task_model), resolve_model(recorded_location(task["cache"]["model"])), Path(tmp) / "model")
        t0 = time.perf_counter()
        main_export(str(staged), output=str(fp32_dir), task="text-classification", opset=18, do_validation=True)
        export_s = time.perf_counter() - t0
        model = AutoModelForSequenceClassification.from_pretrained(staged).eval()
        tok = AutoTokenizer.from_pretrained(staged)
    quantizer = ORTQuantizer.from_pretrained(fp32_dir, file_name="model.onnx")
    quantizer.quantize(save_dir=int8_dir, quantization_config=AutoQuantizationConfig.avx2(is_static=False, per_channel=True))
    ort_fp32 = ORTModelForSequenceClassification.from_pretrained(fp32_dir, provider="CPUExecutionProvider")
    int8_file = next(int8_dir.glob("*quantized*.onnx")).name
    ort_int8 = ORTModelForSequenceClassification.from_pretrained(int8_dir, file_name=int8_file,
                                                                  provider="CPUExecutionProvider")

    rows = [r for r in read_labels(args.labels) if r.split == args.split][: args.limit]
    max_length = task["cache"].get("max_length") or 512
    enc = [tok(r.text, truncation=True, max_length=max_length) for r in rows]
    names = task["labels"]
    y = np.array([names.index(str(r.label)) for r in rows])
    plan = length_batches([len(e["input_ids"]) for e in enc], args.batch_size)

    def batch(idx):
        return tok.pad([enc[i] for i in idx], return_tensors="pt")

    runners = {"transformers fp32": lambda b: model(**b).logits.numpy(),
               "optimum onnx fp32": lambda b: ort_fp32(**b).logits.numpy(),
               "optimum onnx int8": lambda b: ort_int8(**b).logits.numpy()}
    logits = {}
    with torch.no_grad():
        for name, run in runners.items():
            z = np.zeros((len(rows), len(names)), dtype=np.float32)
            for idx in plan:
                z[idx] = run(batch(idx))
            logits[name] = z
        full = [b for b in plan if len(b) == args.batch_size]
        tb = batch(full[len(full) // 2])
        timing = _medians({k: (lambda run=run: run(tb)) for k, run in runners.items()}, args.runs)
    ref = logits["transformers fp32"]
    size = {"optimum onnx fp32": (fp32_dir / "model.onnx").stat().st_size,
            "optimum onnx int8": (int8_dir / int8_file).stat().st_size}
    results = [{"variant": k, "bytes": size.get(k), "median_ms": timing[k],
                "speedup_vs_transformers": timing["transformers fp32"] / timing[k],
                "accuracy": float((z.argmax(1) == y).mean()), "max_logit_diff_vs_transformers": float(np.abs(z - ref).max())}
               for k, z in logits.items()]
    meta = {"task_model": args.task_model, "model": task["cache"]["model"]["name"], "split": args.split,
            "documents": len(rows), "timing_batch": list(tb["input_ids"].shape), "runs": args.runs,
            "machine": describe_machine(), "optimum_onnx": __import__("importlib.metadata").metadata.version("optimum-onnx"),
            "export_seconds": export_s}
    print(f"FULL {meta['model']} task model via optimum: {meta['split']} split {len(rows)} docs; timing batch "
          f"{tb['input_ids'].shape[0]}x{tb['input_ids'].shape[1]} tokens, median of {args.runs} interleaved runs "
          f"on {machine_line(meta['machine'])}")
    print(f"{'variant':<20} {'MB':>7} {'ms/batch':>9} {'x transf.':>9} {'accuracy':>9} {'max|dz|':>9}")
    for r in results:
        mb = f"{r['bytes'] / 1e6:.2f}" if r["bytes"] else "-"
        print(f"{r['variant']:<20} {mb:>7} {r['median_ms']:>9.1f} {r['speedup_vs_transformers']:>9.2f} "
              f"{100 * r['accuracy']:>9.2f} {r['max_logit_diff_vs_transformers']:>9.2e}")
    print(json.dumps({"meta": meta, "results": results}))


if __name__ == "__main__":
    main()
