"""Accuracy against upper-stack speed for early exit, ODE steps and pruning on one model and data set.

    python tools/depth_plot.py --model minilm --layer 3 --data bbc            # docs/results/adaptive-depth.md + PNG
    python tools/depth_plot.py --model minilm --layer 3 --data bbc --check    # exit 1 when the page is stale
    python tools/depth_plot.py --import-pruning runs/depth-prune/results.jsonl --model minilm --data bbc --seed 0 \
        --cache runs/depth-prune/cache-minilm-bbc --pruning-command 'python tools/prune_table.py ...'
    python tools/depth_plot.py --sweep-exits WORK/m.exits-int8 --plain WORK/m.int8-dynamic.onnx --cache CACHE \
        --labels LABELS --thresholds 0.01,0.03,0.1,0.2,0.4 --out docs/results/depth/exit-sweep-bbc-dact-s0.json

The plot reads the JSON result files in --folder (docs/results/depth/): tools/exit_speed.py's onnx-DATA-*.json
and --sweep-exits's exit-sweep-DATA-*.json (early exit at one or several thresholds, ONNX Runtime int8),
tools/ode_steps.py's ode-MODEL-kK-DATA.json (accuracy per number of steps), and --import-pruning's
prune-MODEL-kK-DATA.json (pruning levels; tools/prune_table.py's work folders are not committed, so the rows
used are copied). It draws test accuracy against the upper stack's speed relative to the same task model's
full upper stack (measured, and each point's compute bound), writes docs/results/depth/adaptive-depth-MODEL-kK-DATA.png
and the page docs/results/adaptive-depth.md (the figure, every point, each with its command and machine).
A method without a result file is named on the page as missing; no number is made up for it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from erpack.errors import ErpackError
from erpack.experiments.depth_plot import collect, page_text, pruning_record
from erpack.experiments.page import command_line, publish

ROOT = Path(__file__).resolve().parents[1]


def _cache_model(cache) -> dict:
    meta = json.loads((Path(cache) / "manifest.json").read_text())["meta"]
    return {"encoder": meta["model"]["name"], "layer": meta["layer"], "num_layers": meta["model"]["num_layers"]}


def sweep_exits(graphs, plain_graph, cache, labels, thresholds: list[float], rounds: int = 3) -> dict:
    """Documents/s, accuracy and mean layers of exit graphs at several thresholds (ONNX Runtime, one thread),
    against the plain graph in the same interleaved rounds (speed_vs_plain_int8: the median over rounds of the
    plain graph's seconds over the path's); the format of tools/exit_speed.py's files.
    Needs erpack.depth (the early-exit package), imported here so that the plot runs without it."""
    import time

    import numpy as np

    from erpack.batching import length_batches
    from erpack.depth.ort import ExitGraphs
    from erpack.runtime.session import create_session
    from erpack.store import CacheReader
    from erpack.train.labels import read_labels

    info = json.loads((Path(graphs) / "exits.json").read_text())
    index = {n: i for i, n in enumerate(info["labels"])}
    with CacheReader(cache) as reader:
        test = [e for e in read_labels(labels, "classification") if e.split == "test" and e.id in reader]
        plan = length_batches([reader.info(e.id)["tokens"] for e in test], 32, 16384)
        batches = [(b, reader.get_batch([test[i].id for i in b])) for b in plan]
    y = np.array([index[e.label] for e in test])
    runners = {"plain-int8": (create_session(plain_graph, "cpu", 1), None)}
    for t in thresholds:
        runners[f"exits-int8 threshold={t:g}"] = (ExitGraphs(graphs, "cpu", 1, threshold=t), t)
    times: dict[str, list[float]] = {k: [] for k in runners}
    result: dict[str, dict] = {}
    for rep in range(rounds + 1):
        for name, (sess, t) in runners.items():
            pred = np.zeros(len(test), np.int64)
            layers = np.full(len(test), info["layers"])
            t0 = time.perf_counter()
            for rows, (h, m) in batches:
                outs = sess.run({"hidden_states": h, "attention_mask": m})
                pred[rows] = outs[0].argmax(1)
                if len(outs) > 1:
                    layers[rows] = outs[1]
            if rep:  # the first round warms up
                times[name].append(time.perf_counter() - t0)
            result[name] = {"accuracy": float((pred == y).mean()), "mean_layers": float(layers.mean()),
                            "mean_layers_fraction": float(layers.mean() / info["layers"])}
            if t is not None:
                result[name]["threshold"] = t
    for name in runners:  # against the plain graph round by round (the load of a shared machine drifts), median
        ratio = float(np.median(np.array(times["plain-int8"]) / np.array(times[name])))
        result[name].update(seconds=times[name], documents_per_second=len(test) / float(np.median(times[name])),
                            speed_vs_plain_int8=ratio)
    return {"documents": len(test), "rule": info["early_exit"], "threads": 1, "batch_size": 32, "paths": result}


def _plot_command(args, parser) -> str:
    """The command that renders this page, the same however it was typed (--check leaves it out)."""
    cmd = f"python tools/depth_plot.py --model {args.model} --layer {args.layer} --data {args.data}"
    for name in ("folder", "results"):
        if getattr(args, name) != parser.get_default(name):
            cmd += f" --{name} {getattr(args, name)}"
    return cmd


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="minilm", help="encoder name as the caches record it (minilm, mpnet)")
    p.add_argument("--layer", type=int, default=3, help="k, the cached layer")
    p.add_argument("--data", default="bbc", help="data set name in the result files (bbc, rt)")
    p.add_argument("--folder", default=str(ROOT / "docs/results/depth"), help="where the result JSON files are")
    p.add_argument("--results", default=str(ROOT / "docs/results/adaptive-depth.md"), help="the page to write")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 when the page is out of date")
    p.add_argument("--json", action="store_true", help="print the points and what is missing as JSON")
    g = p.add_argument_group("copying pruning rows (--import-pruning)")
    g.add_argument("--import-pruning", metavar="RESULTS_JSONL", help="prune_table's WORK/results.jsonl: write "
                   "FOLDER/prune-MODEL-kK-DATA.json from its rows of --model, --data, --seed, and stop")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--pruning-command", help="the prune_table.py command that made the rows (recorded as is)")
    g.add_argument("--cache", help="the cache the run used (its manifest gives L); with --sweep-exits, the test cache")
    g = p.add_argument_group("early exit at several thresholds (--sweep-exits; needs erpack.depth)")
    g.add_argument("--sweep-exits", metavar="EXIT_GRAPHS", help="an exported NAME.exits-int8 folder")
    g.add_argument("--plain", help="the same task model's plain int8 graph (NAME.int8-dynamic.onnx)")
    g.add_argument("--labels", help="label file with the test split")
    g.add_argument("--thresholds", default="0.01,0.03,0.1,0.2,0.3,0.5")
    g.add_argument("--rounds", type=int, default=5, help="timed rounds after one warm-up (median)")
    g.add_argument("--task-model", help="the task model folder (recorded in the file)")
    g.add_argument("--out", help="the sweep's JSON file (docs/results/depth/exit-sweep-DATA-RULE-sSEED.json)")
    args = p.parse_args(argv)
    try:
        if args.import_pruning:
            from erpack.runtime.timing import describe_machine
            from erpack.store.atomic import write_atomic

            if not args.cache or not args.pruning_command:
                p.error("--import-pruning needs --cache and --pruning-command")
            ident = _cache_model(args.cache)
            doc = pruning_record(Path(args.import_pruning), args.model, args.data, args.seed, ident["num_layers"],
                                 args.pruning_command, describe_machine(1))
            out = Path(args.folder) / f"prune-{args.model}-k{doc['layer']}-{args.data}.json"
            write_atomic(out, (json.dumps(doc, indent=2) + "\n").encode())
            print(f"wrote {out} ({len(doc['rows'])} rows)")
            return 0
        if args.sweep_exits:
            from erpack.runtime.timing import describe_machine
            from erpack.store.atomic import write_atomic

            if not (args.plain and args.cache and args.labels and args.out):
                p.error("--sweep-exits needs --plain, --cache, --labels and --out")
            doc = sweep_exits(args.sweep_exits, args.plain, args.cache, args.labels,
                              [float(t) for t in args.thresholds.split(",") if t], args.rounds)
            doc = {"model": args.task_model, "cache": args.cache, **_cache_model(args.cache), **doc,
                   "command": command_line(), "machine": describe_machine(1)}
            write_atomic(Path(args.out), (json.dumps(doc, indent=2) + "\n").encode())
            print(json.dumps({k: (round(v["documents_per_second"], 1), round(v["accuracy"], 4), v["mean_layers"])
                              for k, v in doc["paths"].items()}))
            return 0
        points, info = collect(Path(args.folder), args.model, args.layer, args.data)
        png_name = f"adaptive-depth-{args.model}-k{args.layer}-{args.data}.png"
        L = info["num_layers"]
        png = None
        if points and not args.check:
            from erpack.report.plots import depth_speed
            from erpack.store.atomic import write_atomic

            png = depth_speed(points, f"{args.model}, k = {args.layer}, {args.data}: test accuracy against "
                              "upper-stack speed", L / (L - args.layer) if L else None)
            write_atomic(Path(args.folder) / png_name, png)
        text = page_text(points, info, args.model, args.layer, args.data, png_name if points else None,
                         _plot_command(args, p))
        rc = publish(args.results, text, args.check, "python tools/depth_plot.py")
        if args.json:
            print(json.dumps({"points": points, **info}, default=str))
        else:
            print(f"{len(points)} points; missing: {', '.join(info['missing']) or 'none'}"
                  + ("" if args.check else f"; wrote {args.results}"))
        return rc
    except ErpackError as e:
        print(f"depth_plot: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
