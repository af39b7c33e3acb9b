"""Accuracy against upper-stack speed for every way of running fewer upper layers, on one model and data set.

    points, notes = collect(Path("docs/results/depth"), model="minilm", layer=3, data="bbc")
    text = page_text(points, notes, "minilm", 3, "bbc", "adaptive-depth-minilm-k3-bbc.png", command, machine)

Reads the result files of three methods (any of them may be missing; the page then says so):
- early exit: `tools/exit_speed.py`'s `onnx-DATA-RULE-sSEED.json` (one threshold: the one chosen on
  validation) and `tools/depth_plot.py --sweep-exits`'s `exit-sweep-DATA-RULE-sSEED.json` (several thresholds,
  the same format): every `exits-int8*` path is a point, `plain-int8` (the same task model's plain upper graph) is the
  reference; measured speed = documents/s against `plain-int8` through ONNX Runtime int8, one thread;
- ODE steps: `tools/ode_steps.py`'s `ode-MODEL-kK-DATA.json`: one point per number of steps S; the file holds
  accuracies, not speeds, so these points have only their compute bound;
- pruning levels: `prune-MODEL-kK-DATA.json` (rows of `tools/prune_table.py`'s results.jsonl, copied by
  `import_pruning`): measured speed = the unpruned upper stack's PyTorch latency over the level's.
Each point's compute bound (ideal speed): (L-k)/mean_layers for exits and steps, the upper stack's
parameters over the level's for pruning. Against the full L-layer encoder every upper-stack speed is
multiplied by recycling's L/(L-k).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from erpack.batching import length_batches
from erpack.errors import InputError
from erpack.experiments.page import machine_line
from erpack.store import CacheReader

METHODS = {
    "exit": ("early exit", "onnx-{data}-*.json, exit-sweep-{data}-*.json", "tools/exit_speed.py, tools/depth_plot.py --sweep-exits"),
    "ode": ("ODE steps", "ode-{model}-k{layer}-{data}.json", "tools/ode_steps.py"),
    "prune": ("pruning", "prune-{model}-k{layer}-{data}.json", "tools/prune_table.py, then tools/depth_plot.py --import-pruning"),
}


def _load(path: Path) -> dict | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _exit_identity(doc: dict) -> tuple[str | None, int | None, int | None]:
    """(model name, k, L) as the file records them, else Nones. Only the committed file is read (never the
    task model folder it names), so the page renders the same on every machine."""
    if doc.get("encoder") and doc.get("layer") is not None:
        return doc["encoder"], doc["layer"], doc.get("num_layers")
    return None, None, None


def _source(doc: dict, path: Path) -> dict:
    return {"file": path.name, "command": doc.get("command"), "machine": doc.get("machine")}


def exit_points(doc: dict, path: Path) -> list[dict]:
    paths = doc.get("paths") or {}
    plain = paths.get("plain-int8")
    if not plain:
        return []
    full = plain["mean_layers"]  # the plain graph runs every upper layer: L-k
    base_dps = plain.get("documents_per_second")
    rule = doc.get("rule") or {}
    src = _source(doc, path)
    pts = [{"method": "exit", "point": "no exits (plain int8 graph)", "short": "no exits", "accuracy": plain["accuracy"],
            "reference": plain["accuracy"], "mean_layers": full, "upper_layers": full, "ideal": 1.0,
            "measured": 1.0, "documents_per_second": base_dps, "measured_how": "ONNX Runtime int8, 1 thread",
            **src}]
    for name, p in paths.items():
        if not name.startswith("exits-int8") or "every-layer" in name:
            continue
        t = p.get("threshold", rule.get("threshold"))
        dps = p.get("documents_per_second")
        pts.append({"method": "exit", "point": f"{rule.get('rule', '?')} threshold {t:g}" if t is not None else name,
                    "short": f"t={t:g}" if t is not None else name,
                    "accuracy": p["accuracy"], "reference": plain["accuracy"], "mean_layers": p["mean_layers"],
                    "upper_layers": full, "ideal": full / p["mean_layers"],
                    "measured": p.get("speed_vs_plain_int8") or (dps / base_dps if dps and base_dps else None),
                    "documents_per_second": dps, "measured_how": "ONNX Runtime int8, 1 thread",
                    **src})
    return pts


def ode_points(doc: dict, path: Path) -> list[dict]:
    full = doc.get("steps_trained")
    rows = doc.get("rows") or []
    ref = next((r["accuracy"] for r in rows if r.get("steps") == full), None)
    src = _source(doc, path)
    return [{"method": "ode", "point": f"S = {r['steps']}" + (f" (beta {r['beta']:g})" if r.get("beta") is not None else ""),
             "short": f"S={r['steps']}",
             "accuracy": r["accuracy"], "reference": ref, "mean_layers": r.get("mean_layers", r["steps"]),
             "upper_layers": full, "ideal": full / r.get("mean_layers", r["steps"]),
             "measured": r.get("speed_vs_full"), "documents_per_second": r.get("documents_per_second"),
             "measured_how": r.get("measured_how") if r.get("speed_vs_full") else "not measured (accuracy run)",
             "graph_bytes": r.get("graph_bytes"),
             **src} for r in rows if r.get("accuracy") is not None and r.get("steps")]


def prune_points(doc: dict, path: Path) -> list[dict]:
    rows = doc.get("rows") or []
    base = next((r for r in rows if r["level"] == 0.0), None)
    if base is None:
        return []
    src = _source(doc, path)
    return [{"method": "prune", "point": "unpruned" if r["level"] == 0 else f"{r['level']:.0%} pruned",
             "short": f"{r['level']:.0%}",
             "accuracy": r["test"]["accuracy"], "reference": base["test"]["accuracy"], "mean_layers": None,
             "upper_layers": doc.get("num_layers", 0) - doc.get("layer", 0) or None,
             "ideal": base["params"] / r["params"], "measured": base["latency_ms"] / r["latency_ms"],
             "documents_per_second": r["latency_batch"][0] / (r["latency_ms"] / 1e3) if r.get("latency_batch") else None,
             "measured_how": f"PyTorch fp32 latency of one batch of {r['latency_batch'][0]}, {r.get('threads', '?')} thread(s)"
             if r.get("latency_batch") else "PyTorch latency", **src}
            for r in rows if r.get("seed") == doc.get("seed", r.get("seed"))]


def _ode_identity(doc: dict) -> tuple[str | None, int | None, str | None]:
    m = re.fullmatch(r"(.+)-k(\d+)-(.+)", str(doc.get("name", "")))
    data = m.group(3) if m else None
    return doc.get("model"), doc.get("layer"), data


def collect(folder: Path, model: str, layer: int, data: str) -> tuple[list[dict], dict]:
    """Every point of (model, k, data) in `folder`'s JSON files, and what is known or missing:
    {"num_layers": L or None, "missing": {method: why}, "notes": [..]}."""
    folder = Path(folder)
    points: list[dict] = []
    notes: list[str] = []
    num_layers = None
    for path in sorted(folder.glob("*.json")):
        doc = _load(path)
        if doc is None:
            continue
        if path.name.startswith(("onnx-", "exit-sweep-")) and "paths" in doc:
            if path.stem.split("-")[2 if path.name.startswith("exit-") else 1] != data:
                continue
            m, k, L = _exit_identity(doc)
            if (m is not None and m != model) or (k is not None and k != layer):
                continue
            if m is None:
                notes.append(f"{path.name} records no encoder: "
                             f"taken as {model} k = {layer} by its name")
            num_layers = num_layers or L
            points += exit_points(doc, path)
        elif path.name.startswith("ode-") and "rows" in doc and "steps_trained" in doc and \
                not (doc.get("config") or {}).get("random_steps"):  # the plot's ODE points: trained at L-k steps
            m, k, d = _ode_identity(doc)
            if (m, k, d) != (model, layer, data):
                continue
            num_layers = num_layers or (k + doc["steps_trained"])
            points += ode_points(doc, path)
        elif path.name.startswith("prune-") and doc.get("kind") == "pruning":
            if (doc.get("model"), doc.get("layer"), doc.get("data")) != (model, layer, data):
                continue
            num_layers = num_layers or doc.get("num_layers")
            points += prune_points(doc, path)
    for p in points:
        if p["measured"] is not None and p["measured"] > 1.2 * p["ideal"]:
            size = "" if not p.get("graph_bytes") else " (graph sizes in that file: " + ", ".join(
                f"{q['short']} {q['graph_bytes'] / 1e6:.2f} MB" for q in points if q["file"] == p["file"] and q.get("graph_bytes")) + ")"
            notes.append(f"{p['file']}, {p['point']}: measured {p['measured']:.2f}x, above its compute bound "
                         f"{p['ideal']:.2f}x: the graphs compared differ in more than the layers they run{size}")
    try:  # the folder as the page names it: relative to where the tool runs (the repository), when inside it
        shown = Path(folder).resolve().relative_to(Path.cwd())
    except ValueError:
        shown = folder
    missing = {}
    for key, (name, pattern, tool) in METHODS.items():
        if not any(p["method"] == key for p in points):
            missing[key] = (f"no result file for {name} on {model} k = {layer}, {data} in {shown}/ "
                            f"(expected {pattern.format(model=model, layer=layer, data=data)}, written by {tool})")
    if any(p["file"].startswith("exit-sweep-") for p in points):
        notes.append("early exit at several thresholds (exit-sweep-*.json): the thresholds are swept on the test "
                     "split to draw the curve; the operating point chosen on validation is the onnx-*.json file's. Its graphs "
                     "are the task model's export as tools/exit_speed.py makes them (`erpack export TASK_MODEL -o "
                     "WORK/m.onnx --quantize dynamic --calibration-cache CACHE`: WORK/m.exits-int8 and "
                     "WORK/m.int8-dynamic.onnx); the task model is the file's `model`")
    elif any(p["method"] == "exit" for p in points) and len({p["point"] for p in points if p["method"] == "exit"}) <= 2:
        notes.append("early exit: one threshold only (the one chosen on validation), so one point beside the plain graph")
    return points, {"num_layers": num_layers, "missing": missing, "notes": notes}


def _fmt(x, spec: str, none: str = "—") -> str:
    return none if x is None else format(x, spec)


def page_text(points: list[dict], info: dict, model: str, layer: int, data: str, png: str | None,
              command: str) -> str:
    """The Markdown page: what is plotted, the figure, the table of points, each source's command and machine."""
    L = info.get("num_layers")
    bound = f"L/(L-k) = {L}/{L - layer} = {L / (L - layer):.2f}" if L else "L/(L-k) (L not recorded in any file)"
    lines = [f"# Adaptive depth: accuracy against upper-stack speed ({model}, k = {layer}, {data})", "",
             f"Made by `{command}` from the result files in docs/results/depth/ (each point's own command and "
             "machine are listed under [Sources](#sources)). A figure is changed by rerunning the commands, never by hand.", "",
             "x: speed of the upper stack relative to the same task model's full upper stack (all L-k layers): "
             "measured (filled markers, solid lines) and its compute bound (hollow markers, dashed lines): "
             "(L-k)/mean layers for early exit and ODE steps, upper-stack parameters over the level's for pruning. "
             "y: test accuracy. Against the full L-layer encoder every upper-stack speed is multiplied by "
             f"recycling's bound {bound} (the top axis).", "",
             "Measured speeds are comparable only between points measured the same way (the table's *measured how*): "
             "early exit and ODE steps are timed through ONNX Runtime int8 (documents/s of the test split against "
             "the same task model's full int8 stack), pruning through PyTorch fp32 (latency of one batch against "
             "the unpruned stack); each against its own reference in the same interleaved rounds, on a shared "
             "2-core machine. Task models of different methods were trained separately (each point's Δ is against "
             "its own task model's full stack).", ""]
    missing = info.get("missing") or {}
    if missing:
        lines += ["## Missing", ""] + [f"- **{METHODS[k][0]}**: {why}" for k, why in missing.items()] + [""]
    if info.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in info["notes"]] + [""]
    if png:
        lines += ["## Figure", "", f"![accuracy against upper-stack speed](depth/{png})", ""]
    else:
        lines += ["## Figure", "", "No figure: no points to draw.", ""]
    sources = list(dict.fromkeys(p["file"] for p in points))
    lines += ["## Points", "",
              "| method | point | test accuracy | Δ vs its full stack (points) | mean layers of L-k | compute bound (x) "
              "| measured (x) | documents/s | measured how | source |",
              "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for p in sorted(points, key=lambda p: (list(METHODS).index(p["method"]), p["file"], p["ideal"], p["point"])):
        delta = None if p["reference"] is None else (p["accuracy"] - p["reference"]) * 100
        ml = None if p["mean_layers"] is None else f"{p['mean_layers']:.2f} of {p['upper_layers']:g}"
        lines.append(f"| {METHODS[p['method']][0]} | {p['point']} | {p['accuracy']:.4f} | {_fmt(delta, '+.2f')} | "
                     f"{ml or '—'} | {p['ideal']:.2f} | {_fmt(p['measured'], '.2f')} | "
                     f"{_fmt(p['documents_per_second'], '.1f')} | {p['measured_how']} | [{sources.index(p['file']) + 1}] |")
    lines += ["", "## Sources", ""]
    for i, f in enumerate(sources, 1):
        p = next(p for p in points if p["file"] == f)
        m = p["machine"]
        where = (machine_line(m) if isinstance(m, dict) else str(m)) if m else "machine not recorded in the file"
        lines.append(f"{i}. `docs/results/depth/{f}`: `{p['command'] or 'command not recorded in the file'}`; {where}.")
    return "\n".join(lines) + "\n"


def pruning_record(results_jsonl: Path, model: str, data: str, seed: int, num_layers: int, command: str,
                   machine: dict | None) -> dict:
    """The rows of one (model, data set, seed) from prune_table's WORK/results.jsonl, as a committed file."""
    rows = [json.loads(line) for line in Path(results_jsonl).read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("model") == model and r.get("dataset") == data and r.get("seed") == seed]
    if not rows:
        raise InputError(f"{results_jsonl} holds no rows for model {model}, data set {data}, seed {seed}; "
                         "run tools/prune_table.py first (see its --help)")
    layer = rows[0]["layer"]
    for r in rows:
        r.pop("plan", None)
    if machine is not None:  # the threads the rows were timed with, not this process's
        machine = {**machine, "torch_threads": sorted({r.get("threads") for r in rows} - {None}) or None}
    return {"kind": "pruning", "model": model, "layer": layer, "num_layers": num_layers, "data": data, "seed": seed,
            "command": command, "machine": machine, "rows": sorted(rows, key=lambda r: r["level"])}


def test_batches(cache, labels, label_names: list[str]):
    """The test split's documents of `labels` found in `cache`: length-grouped batches of 32 and the label ids."""
    import numpy as np

    from erpack.train.labels import read_labels

    index = {n: i for i, n in enumerate(label_names)}
    with CacheReader(cache) as reader:
        test = [e for e in read_labels(labels, "classification") if e.split == "test" and e.id in reader]
        plan = length_batches([reader.info(e.id)["tokens"] for e in test], 32, 16384)
        batches = [(b, reader.get_batch([test[i].id for i in b])) for b in plan]
    return batches, np.array([index[e.label] for e in test])


def interleaved(runners: dict, batches, y, layers: dict, reference: str, rounds: int) -> dict:
    """Run every session over the batches in turns, `rounds` timed rounds after a warm-up; per path accuracy,
    mean layers (a second output gives them per document, else `layers[name]`), documents/s from the median,
    and `speed`: the median over rounds of the reference's seconds over the path's (the load drifts)."""
    import time

    import numpy as np

    times: dict[str, list[float]] = {k: [] for k in runners}
    result: dict[str, dict] = {}
    for rep in range(rounds + 1):
        for name, sess in runners.items():
            pred = np.zeros(len(y), np.int64)
            used = np.full(len(y), layers[name], dtype=np.float64)
            t0 = time.perf_counter()
            for rows, (h, m) in batches:
                outs = sess.run({"hidden_states": h, "attention_mask": m})
                pred[rows] = outs[0].argmax(1)
                if len(outs) > 1:
                    used[rows] = outs[1]
            if rep:  # the first round warms up
                times[name].append(time.perf_counter() - t0)
            result[name] = {"accuracy": float((pred == y).mean()), "mean_layers": float(used.mean())}
    for name in runners:
        result[name].update(seconds=times[name], documents_per_second=len(y) / float(np.median(times[name])),
                            speed=float(np.median(np.array(times[reference]) / np.array(times[name]))))
    return result
