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
    for path in sorted(RESULTS.glob("ode-*.json")):
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
