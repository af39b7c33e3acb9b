"""ONNX Runtime documents/s of a task model with exits, with and without them, on its test split.

    python tools/exit_speed.py MODEL CACHE LABELS WORK OUT.json

Exports MODEL (`erpack export --quantize dynamic --calibration-cache CACHE`) into WORK once: the plain
upper graph (fp32, int8 dynamic) and the exit graphs (WORK/m.exits, m.exits-int8). Reads the test
split's records into memory (length-grouped batches of 32) and runs each path over them, in turns,
one intra-op thread: the plain graph, the exit graphs with the recorded rule, and the exit graphs
with every layer run (the cost of chaining per-layer graphs against the single graph). Four rounds,
the first a warm-up; documents/s from the median. Writes OUT.json and prints a summary.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

from erpack.depth.ort import ExitGraphs
from erpack.experiments.depth_plot import interleaved, test_batches
from erpack.runtime.session import create_session
from erpack.runtime.timing import describe_machine


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a task model trained with --early-exit")
    parser.add_argument("cache", help="the cache it was trained on (its test split is run)")
    parser.add_argument("labels", help="the label file with the splits (id, label, split per line)")
    parser.add_argument("work", help="folder for the exported graphs (made once, reused)")
    parser.add_argument("out", help="the result file to write (docs/results/depth/onnx-....json)")
    args = parser.parse_args(argv)
    model, cache, labels, work, out = args.model, args.cache, args.labels, args.work, args.out
    work = Path(work)
    graph = work / "m.onnx"
    if not (work / "m.exits-int8" / "exits.json").exists():
        subprocess.run([sys.executable, "-m", "erpack", "export", model, "-o", str(graph), "--quantize", "dynamic",
                        "--calibration-cache", cache, "--overwrite"], check=True, stdout=subprocess.DEVNULL)
    info = json.loads((work / "m.exits" / "exits.json").read_text())
    batches, y = test_batches(cache, labels, info["labels"])
    runners = {
        "plain-int8": create_session(graph.with_name("m.int8-dynamic.onnx"), "cpu", 1),
        "exits-int8": ExitGraphs(work / "m.exits-int8", "cpu", 1),
        "exits-int8-every-layer": ExitGraphs(work / "m.exits-int8", "cpu", 1, early_exit=False),
        "plain-fp32": create_session(graph, "cpu", 1),
        "exits-fp32": ExitGraphs(work / "m.exits", "cpu", 1),
        "exits-fp32-every-layer": ExitGraphs(work / "m.exits", "cpu", 1, early_exit=False),
    }
    result = interleaved(runners, batches, y, {k: info["layers"] for k in runners}, "plain-int8", rounds=3)
    base = result["plain-int8"]["documents_per_second"]
    for r in result.values():
        r["mean_layers_fraction"] = r["mean_layers"] / info["layers"]
        r["speed_vs_plain_int8"] = r["documents_per_second"] / base
    doc = {"model": model, "cache": cache, "documents": len(y), "rule": info["early_exit"], "threads": 1,
           "batch_size": 32, "command": "python tools/exit_speed.py " + " ".join(argv), "machine": describe_machine(1),
           "paths": result}
    Path(out).write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({k: (round(v["documents_per_second"], 1), round(v["accuracy"], 4), v["mean_layers"]) for k, v in result.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
