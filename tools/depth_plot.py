"""Accuracy against upper-stack speed for early exit, ODE steps and pruning on one model and data set.

    python tools/depth_plot.py --model minilm --layer 3 --data bbc            # docs/results/adaptive-depth.md + PNG
    python tools/depth_plot.py --model minilm --layer 3 --data bbc --check    # exit 1 when the page is stale
    python tools/depth_plot.py --import-pruning runs/depth-prune/results.jsonl --model minilm --data bbc --seed 0 \
        --cache runs/depth-prune/cache-minilm-bbc --pruning-command 'python tools/prune_table.py ...'
    python tools/depth_plot.py --sweep-exits WORK/m.exits-int8 --plain WORK/m.int8-dynamic.onnx --cache CACHE \
        --labels LABELS --thresholds 0.01,0.03,0.1,0.2,0.4 --out docs/results/depth/exit-sweep-bbc-dact-s0.json
    python tools/depth_plot.py --time-ode TM --graphs 1=W/s1.int8-dynamic.onnx,2=...,3=... --cache CACHE \
        --labels LABELS --name minilm-k3-bbc --out docs/results/depth/ode-speed-minilm-k3-bbc.json

The plot reads the JSON result files in --folder (docs/results/depth/): tools/exit_speed.py's onnx-DATA-*.json
and --sweep-exits's exit-sweep-DATA-*.json (early exit at one or several thresholds, ONNX Runtime int8),
tools/ode_steps.py's ode-MODEL-kK-DATA.json (accuracy per number of steps; --time-ode's ode-speed-*.json adds
ONNX Runtime int8 speeds), and --import-pruning's
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
from erpack.experiments.depth_plot import collect, interleaved, page_text, pruning_record, test_batches
from erpack.experiments.page import command_line, publish

ROOT = Path(__file__).resolve().parents[1]


def _cache_model(cache) -> dict:
    meta = json.loads((Path(cache) / "manifest.json").read_text())["meta"]
    return {"encoder": meta["model"]["name"], "layer": meta["layer"], "num_layers": meta["model"]["num_layers"]}


def sweep_exits(graphs, plain_graph, cache, labels, thresholds: list[float], rounds: int) -> dict:
    """Documents/s, accuracy and mean layers of exit graphs at several thresholds (ONNX Runtime, one thread),
    against the plain graph in the same interleaved rounds (speed_vs_plain_int8: the median over rounds of the
    plain graph's seconds over the path's); the format of tools/exit_speed.py's files.
    Needs erpack.depth (the early-exit package), imported here so that the plot runs without it."""
    from erpack.depth.ort import ExitGraphs
    from erpack.runtime.session import create_session

    info = json.loads((Path(graphs) / "exits.json").read_text())
    batches, y = test_batches(cache, labels, info["labels"])
    runners = {"plain-int8": create_session(plain_graph, "cpu", 1)}
    runners |= {f"exits-int8 threshold={t:g}": ExitGraphs(graphs, "cpu", 1, threshold=t) for t in thresholds}
    result = interleaved(runners, batches, y, {k: info["layers"] for k in runners}, "plain-int8", rounds)
    for name, t in zip(list(runners)[1:], thresholds):
        result[name]["threshold"] = t
    for r in result.values():
        r["mean_layers_fraction"] = r["mean_layers"] / info["layers"]
        r["speed_vs_plain_int8"] = r.pop("speed")
    return {"documents": len(y), "rule": info["early_exit"], "threads": 1, "batch_size": 32, "paths": result}


def time_ode(task_model, graphs: dict[int, str], cache, labels, rounds: int) -> dict:
    """ONNX Runtime int8 documents/s and accuracy of one ODE-step task model exported at several S
    (`erpack export TM -o sS.onnx --steps S --quantize dynamic`), against S = L-k (the stack as trained) in the
    same interleaved rounds: rows in the format of tools/ode_steps.py's files, with the measured speed."""
    from erpack.runtime.session import create_session

    rec = json.loads((Path(task_model) / "erpack_task.json").read_text())
    full = rec["ode"]["steps_trained"]
    if full not in graphs:
        raise SystemExit(f"time-ode: the graph of S = {full} (the stack as trained) is the reference; give it")
    batches, y = test_batches(cache, labels, rec["labels"])
    runners = {f"S={s}": create_session(g, "cpu", 1) for s, g in sorted(graphs.items())}
    result = interleaved(runners, batches, y, {f"S={s}": s for s in graphs}, f"S={full}", rounds)
    rows = [{"steps": s, "beta": rec["ode"].get("betas", {}).get(str(s)), "mean_layers": float(s),
             "accuracy": result[f"S={s}"]["accuracy"], "documents": len(y),
             "documents_per_second": result[f"S={s}"]["documents_per_second"],
             "speed_vs_full": result[f"S={s}"]["speed"], "seconds": result[f"S={s}"]["seconds"],
             "measured_how": "ONNX Runtime int8 (dynamic), 1 thread", "graph": str(graphs[s]),
             "graph_bytes": Path(graphs[s]).stat().st_size} for s in sorted(graphs)]
    m = rec["cache"]["model"]
    return {"model": m["name"], "layer": rec["layer"], "steps_trained": full, "task_model": str(task_model),
            "threads": 1, "batch_size": 32, "rows": rows}


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
    g = p.add_argument_group("ODE steps through ONNX Runtime (--time-ode; needs erpack.depth)")
    g.add_argument("--time-ode", metavar="TASK_MODEL", help="a task model with a shared upper block; with --graphs "
                   "S=PATH,... (its int8 exports, `erpack export TM -o sS.onnx --steps S --quantize dynamic`), "
                   "--cache, --labels and --out (docs/results/depth/ode-speed-MODEL-kK-DATA.json)")
    g.add_argument("--graphs", help="S=PATH,S=PATH,...: the int8 graph of each number of steps")
    g.add_argument("--name", help="the run's name in the file, MODEL-kK-DATA (how the plot finds its data set)")
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
        if args.time_ode:
            from erpack.runtime.timing import describe_machine
            from erpack.store.atomic import write_atomic

            if not (args.graphs and args.cache and args.labels and args.out and args.name):
                p.error("--time-ode needs --graphs, --cache, --labels, --name and --out")
            graphs = {int(k): v for k, v in (x.split("=", 1) for x in args.graphs.split(","))}
            doc = time_ode(args.time_ode, graphs, args.cache, args.labels, args.rounds)
            doc = {"name": args.name, **doc, "command": command_line(), "machine": describe_machine(1)}
            write_atomic(Path(args.out), (json.dumps(doc, indent=2) + "\n").encode())
            print(json.dumps([(r["steps"], round(r["documents_per_second"], 1), round(r["accuracy"], 4),
                               round(r["speed_vs_full"], 2)) for r in doc["rows"]]))
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
        done = publish(args.results, text, args.check, "python tools/depth_plot.py")
        if done.message:
            print(done.message, file=sys.stderr)
        if args.json:
            print(json.dumps({"points": points, **info}, default=str))
        else:
            print(f"{len(points)} points; missing: {', '.join(info['missing']) or 'none'}"
                  + ("" if args.check else f"; wrote {args.results}"))
        return done.rc
    except ErpackError as e:
        print(f"depth_plot: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
