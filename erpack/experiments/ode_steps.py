"""Accuracy against ODE steps: a shared-block task model trained from a cache, scored at every S in 1..L-k.

The library behind `tools/ode_steps.py` (which parses arguments and prints): `run_steps` trains
(`train_from_cache` with a ShareSpec, as `erpack train --shared-block`) and evaluates (as `erpack eval
--steps S`) and returns the result document written to docs/results/depth/ode-NAME.json; `render` makes
docs/results/ode-steps.md's table from those files.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

RESULTS = Path("docs/results/depth")
PAGE = Path("docs/results/ode-steps.md")


def run_steps(args) -> dict:
    """Train the shared-block task model of `args` (the tool's options) and score it at every S."""
    import torch

    from erpack.depth.distill import ShareSpec
    from erpack.runtime.timing import describe_machine
    from erpack.train import TrainConfig
    from erpack.train.evaluation import evaluate
    from erpack.train.trainer import train_from_cache

    torch.set_num_threads(args.threads)
    out = Path(args.work) / args.name
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      train_limit=args.train_limit, device="cpu")
    t0 = time.perf_counter()
    s = train_from_cache(args.cache, args.labels, output=out, config=cfg, overwrite=True, skip_missing=True,
                         shared_block=ShareSpec(distill_epochs=args.distill_epochs, init=args.block_init))
    train_seconds = time.perf_counter() - t0
    record = json.loads((out / "erpack_task.json").read_text())["ode"]
    n = record["steps_trained"]
    rows = []
    for steps in range(1, n + 1):
        e = evaluate(out, args.cache, args.labels, split="test", skip_missing=True, device="cpu", steps=steps)
        rows.append({"steps": steps, "beta": record["betas"][str(steps)], "mean_layers": e.mean_layers,
                     "accuracy": e.metrics["accuracy"], "macro_f1": e.metrics["macro_f1"], "documents": e.documents,
                     "validation": record["validation"].get(str(steps), {}), "seconds": e.seconds})
    full = rows[-1]["accuracy"]
    half = next(r for r in rows if r["steps"] == max(1, n // 2))
    return {"name": args.name, "command": "python " + " ".join(sys.argv), "machine": describe_machine(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cache": str(args.cache),
            "labels": args.labels, "model": s.model, "layer": s.layer, "steps_trained": n,
            "documents": s.documents, "config": {"epochs": args.epochs, "distill_epochs": args.distill_epochs,
                                                 "block_init": args.block_init, "train_limit": args.train_limit,
                                                 "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed},
            "block": {k: v for k, v in record["block"].items() if k != "distill"},
            "distill": record["block"].get("distill", []), "train_seconds": train_seconds,
            "fine_tune": {"best_epoch": s.recycled.best_epoch, "best_validation": s.recycled.best_validation},
            "rows": rows,
            "half_steps": {"steps": half["steps"], "accuracy": half["accuracy"], "all_steps_accuracy": full,
                           "delta_points": 100 * (half["accuracy"] - full),
                           "within_1_point": bool(100 * (full - half["accuracy"]) <= 1.0)}}


def render() -> str:
    """The Markdown table of every docs/results/depth/ode-*.json."""
    lines = ["| run | model, k | L-k | steps S | beta | mean layers | test accuracy | Δ vs L-k (points) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    verdicts = []
    for path in sorted(p for p in RESULTS.glob("ode-*.json") if p.name != "ode-unroll.json"):
        r = json.loads(path.read_text())
        full = r["rows"][-1]["accuracy"]
        for row in r["rows"]:
            lines.append(f"| {r['name']} | {r['model']}, {r['layer']} | {r['steps_trained']} | {row['steps']} | "
                         f"{row['beta']:.3g} | {row['mean_layers']:g} | {row['accuracy']:.4f} | "
                         f"{100 * (row['accuracy'] - full):+.2f} |")
        h = r["half_steps"]
        verdicts.append(f"- {r['name']}: {h['steps']} of {r['steps_trained']} steps, {h['delta_points']:+.2f} points: "
                        + ("within 1 point" if h["within_1_point"] else "**not** within 1 point"))
    return "\n".join(lines + [""] + verdicts) + "\n"


def unrolled_against_loop(model: str = "minilm", k: int = 3, steps: int = 3, batch: int = 32, tokens: int = 40,
                          threads: int = 1, work: str = "runs/ode", runs: int = 15) -> dict:
    """One S-step graph (erpack export --steps S) against one block graph called S times plus a head graph:
    onnxruntime CPU latency (interleaved medians) on a random (batch, tokens) input, and their largest
    difference. What decided that erpack unrolls (docs/depth.md)."""
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification

    from erpack.assets import resolve_model
    from erpack.depth.ode import OdeUpper, head_of, one_layer
    from erpack.export.onnx_export import export_upper
    from erpack.export.session import create_session
    from erpack.runtime.timing import describe_machine, interleaved_medians

    torch.manual_seed(0)
    m = AutoModelForSequenceClassification.from_pretrained(resolve_model(model), num_labels=2).eval()
    hidden_size = int(m.config.hidden_size)
    folder = Path(work)
    folder.mkdir(parents=True, exist_ok=True)
    info = {"cache": {}, "task": "classification", "labels": ["a", "b"], "mode": "upper", "variant": "fp32"}
    graphs = {"unrolled": OdeUpper(m, k, steps, 1.0, tied=True), "block": one_layer(m, k), "head": head_of(m)}
    sessions = {}
    for name, module in graphs.items():
        export_upper(module, folder / f"{name}.onnx", hidden_size, info)
        sessions[name] = create_session(folder / f"{name}.onnx", "cpu", threads)
    rng = np.random.default_rng(0)
    h = rng.standard_normal((batch, tokens, hidden_size)).astype(np.float32)
    mask = np.ones((batch, tokens), np.int64)
    mask[::3, tokens * 2 // 3:] = 0

    def feed(name, x):
        wanted = {i.name for i in sessions[name].session.get_inputs()}  # the head graph may not read the mask
        return {n: v for n, v in (("hidden_states", x), ("attention_mask", mask)) if n in wanted}

    def unrolled():
        return sessions["unrolled"].run(feed("unrolled", h))[0]

    def loop():
        x = h
        for _ in range(steps):
            x = sessions["block"].run(feed("block", x))[0]
        return sessions["head"].run(feed("head", x))[0]

    t = interleaved_medians({"unrolled": unrolled, "loop": loop}, runs=runs)
    return {"model": model, "layer": k, "steps": steps, "batch": [batch, tokens], "threads": threads,
            "unrolled_ms": t["unrolled"]["median_ms"], "loop_ms": t["loop"]["median_ms"],
            "max_diff": float(np.abs(unrolled() - loop()).max()),
            "bytes": {name: (folder / f"{name}.onnx").stat().st_size for name in graphs},
            "machine": describe_machine(threads), "command": "python " + " ".join(sys.argv)}


def tiny_albert_folder(folder, layers: int = 6, hidden: int = 128, seed: int = 0) -> Path:
    """A randomly initialised ALBERT (one shared group over `layers` virtual layers) with MiniLM's word-piece
    tokenizer, saved as a model folder `erpack encode --model FOLDER` reads (no ALBERT weights install here)."""
    import torch
    from transformers import AlbertConfig, AlbertModel, AutoTokenizer

    from erpack.assets import resolve_model

    folder = Path(folder)
    tok = AutoTokenizer.from_pretrained(resolve_model("minilm"))
    torch.manual_seed(seed)
    config = AlbertConfig(vocab_size=tok.vocab_size, embedding_size=64, hidden_size=hidden, num_hidden_layers=layers,
                          num_hidden_groups=1, num_attention_heads=4, intermediate_size=2 * hidden,
                          max_position_embeddings=512, pad_token_id=tok.pad_token_id)
    AlbertModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
