"""docs/results/early-exit.md, rendered from the committed result files of early exit alone.

    text = page_text(Path("docs/results/depth"))   # what tools/exit_page.py writes (or checks, --check)

Reads, in that folder:
- `MODEL-kK-runs.json` (tools/exit_table.py): per data set, rule and seed, test accuracy with exits, with every
  layer run (`erpack eval --no-early-exit`), mean layers, the plain model trained without exits; one section
  per file (one encoder split at k), with `MODEL-kK-notes.md` (the runs' sizes, machine, caveats) when present;
- `onnx-*.json` (tools/exit_speed.py): documents/s through ONNX Runtime, each given to the section of its
  encoder: the encoder and k it records, else its name (`onnx-MODEL-kK-...`, `onnx-MODEL-...`), else the task
  model it names being one of that section's runs (read as a string: no task model folder is ever opened,
  so the page renders the same on every machine);
- the pruned-model comparison (PRUNED: three speed files) and `pruned-exits-notes.md`.

Whether issue 22's target holds (TARGET) is worked out from the numbers, run by run; nothing on the page is
typed in by hand but the notes files and the fixed prose about what the columns mean.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from erpack.depth.rules import reference_of
from erpack.experiments.page import machine_line

RESULTS = Path("docs/results/depth")
PAGE = Path("docs/results/early-exit.md")
TOOL = "python tools/exit_page.py"
# Issue 22: mean layers at most 70% of L - k, at most 0.5 point (BBC) / 1 point (RT) below the same task
# model run with every layer; a data set without a line here is shown without a verdict.
TARGET = {"share": 0.70, "points": {"bbc": 0.5, "rt": 1.0}}
# The pruned-model comparisons, each on one data set and encoder: exits alone timed in the session of the
# pruned model's run, the pruned model with exits (its plain graph: pruning alone), optionally the pruned
# model's exits trained longer, and the notes file that says how each model was trained.
PRUNED = (
    {"group": "minilm-k3", "title": "Pruned on 400 training articles, exits alone on all",
     "exits": "onnx-bbc-dact-s0-same-session.json", "combined": "onnx-bbc-pruned-dact-s0.json",
     "longer": "onnx-bbc-pruned-dact-all-s0.json", "notes": "pruned-exits-notes.md"},
    {"group": "minilm-k3", "title": "Every model trained on all training articles",
     "exits": "onnx-bbc-dact-s0-full.json", "combined": "onnx-bbc-pruned-dact-s0-full.json",
     "notes": "pruned-exits-full-notes.md"},
)
PRUNED_FILES = {c[k] for c in PRUNED for k in ("exits", "combined", "longer") if c.get(k)}
NAMES = {"minilm": "MiniLM", "mpnet": "MPNet"}
_RUNS = re.compile(r"^(?P<model>.+)-k(?P<k>\d+)-runs\.json$")


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _pct(x) -> str:
    return "" if x is None else f"{100 * x:.2f}"


def _title(group: str) -> str:
    model, k = group.rsplit("-k", 1)
    return f"{NAMES.get(model, model)} k = {k}"


def read_groups(folder: Path) -> dict[str, dict]:
    """{group ("minilm-k3"): {"file", "doc", "notes", "speed": {key: (file, doc)}}} and the unmatched speed
    files under "" ({"speed": ...}); `key` is the speed file's name less `onnx-` and the group prefix."""
    folder = Path(folder)
    groups: dict[str, dict] = {}
    for path in sorted(folder.glob("*-runs.json")):
        m = _RUNS.match(path.name)
        if not m:
            continue
        g = f"{m['model']}-k{m['k']}"
        notes = folder / f"{g}-notes.md"
        groups[g] = {"file": path.name, "doc": _load(path), "model": m["model"], "k": int(m["k"]),
                     "notes": notes.read_text().strip() if notes.exists() else None, "speed": {}}
    loose: dict[str, tuple[str, dict]] = {}
    by_encoder = {}
    for g, v in groups.items():
        by_encoder.setdefault(v["model"], []).append(g)
    for path in sorted(folder.glob("onnx-*.json")):
        doc, stem = _load(path), path.stem[len("onnx-"):]
        g, key = _speed_group(doc, stem, groups, by_encoder)
        (groups[g]["speed"] if g else loose)[key] = (path.name, doc)
    groups[""] = {"speed": loose}
    return groups


def _speed_group(doc: dict, stem: str, groups: dict, by_encoder: dict) -> tuple[str | None, str]:
    if doc.get("encoder") and doc.get("layer") is not None:
        g = f"{doc['encoder']}-k{doc['layer']}"
        for prefix in (f"{g}-", f"{doc['encoder']}-"):
            if stem.startswith(prefix):
                stem = stem[len(prefix):]
        return (g if g in groups else None), stem
    for g in groups:
        if stem.startswith(f"{g}-"):
            return g, stem[len(g) + 1:]
    for enc, gs in by_encoder.items():
        if len(gs) == 1 and stem.startswith(f"{enc}-"):
            return gs[0], stem[len(enc) + 1:]
    for g, v in groups.items():
        if any(r.get("model") == doc.get("model") for r in v["doc"]["runs"]):
            return g, stem
    return None, stem


def upper_layers(runs: list[dict]) -> int | None:
    """L - k of the runs: mean layers over their share of L - k."""
    sizes = {round(r["mean_layers"] / r["mean_layers_fraction"]) for r in runs
             if r["rule"] != "none" and r.get("mean_layers_fraction")}
    return sizes.pop() if len(sizes) == 1 else None


def verdict(run: dict) -> tuple[bool | None, str]:
    """Whether the run meets TARGET, and why not (None: no target for its data set)."""
    budget = TARGET["points"].get(run["data"])
    if budget is None:
        return None, f"no target for {run['data']}"
    why = []
    if run["mean_layers_fraction"] > TARGET["share"] + 1e-9:
        why.append(f"{100 * run['mean_layers_fraction']:.0f}% of L - k")
    if run["loss_points_vs_no_exits"] > budget + 1e-9:
        why.append(f"{run['loss_points_vs_no_exits']:.2f} points lost, budget {budget:g}")
    return not why, "; ".join(why)


def _span(xs, fmt: str) -> str:
    lo, hi = min(xs), max(xs)
    return format(lo, fmt) if format(lo, fmt) == format(hi, fmt) else f"{format(lo, fmt)} to {format(hi, fmt)}"


def accuracy_lines(g: str, v: dict) -> list[str]:
    runs = v["doc"]["runs"]
    exits = [r for r in runs if r["rule"] != "none"]
    n = upper_layers(runs)
    with_plain = any(r.get("test_accuracy_plain_model") is not None for r in exits)
    lines = ["### Accuracy and layers run (test split)", "",
             "| data | rule | seed | threshold | test acc. with exits | same model, every layer | "
             + ("plain model | " if with_plain else "") + f"loss vs every layer (pt) | mean layers (of {n}) | "
             "share of L-k | target |",
             "|---|---|---|---|---|---|" + ("---|" if with_plain else "") + "---|---|---|---|"]
    for r in exits:
        ok, why = verdict(r)
        mark = "—" if ok is None else ("holds" if ok else f"no: {why}")
        lines.append(f"| {r['data']} | {r['rule']} | {r['seed']} | {r['threshold']:g} | {_pct(r['test_accuracy'])} | "
                     f"{_pct(r['test_accuracy_no_exits'])} | "
                     + (f"{_pct(r.get('test_accuracy_plain_model'))} | " if with_plain else "")
                     + f"{r['loss_points_vs_no_exits']:+.2f} | {r['mean_layers']:.2f} | "
                     f"{100 * r['mean_layers_fraction']:.0f}% | {mark} |")
    sizes = {}
    for r in runs:
        sizes.setdefault(r["data"], (r["train_documents"], r["validation_documents"], r["test_documents"]))
    lines += ["", "*loss* = accuracy of the same model with every layer run (`--no-early-exit`: its head) minus with "
              "exits, in points (positive: the exits cost accuracy)"
              + ("; *plain model*: `erpack train` without `--early-exit`, same data set and seed" if with_plain else "")
              + f"; *target*: mean layers at most {100 * TARGET['share']:.0f}% of L - k at no more than "
              + " / ".join(f"{p:g} point ({d})" for d, p in TARGET["points"].items()) + " lost. Documents: "
              + "; ".join(f"{d} train {a:,}, validation {b:,}, test {c:,} (one test document = {100 / c:.2f} point)"
                          for d, (a, b, c) in sizes.items()) + "."]
    lines += ["", f"Run file: [depth/{v['file']}](depth/{v['file']}), `{v['doc'].get('command', '?')}`"
              + (f" on {machine_line(v['doc']['machine'])}" if v["doc"].get("machine") else " (machine not recorded)")
              + "."]
    for i, m in enumerate(v["doc"].get("merged", [])):  # runs kept from an earlier result file (exit_table --merge)
        which = ", ".join(f"{r['data']} {r['rule']} seed {r['seed']}" for r in runs if r.get("measured_by") == i)
        lines += ["", f"Of these, {which} were measured earlier, by `{m.get('command') or '?'}`"
                  + (f" on {machine_line(m['machine'])}" if m.get("machine") else "") + "."]
    limited = [d for d in sizes if any(r["data"] == d and r.get("train_limit") for r in runs)]
    if not v["doc"].get("train_subset"):
        lines += ["", "Where a run trained on fewer documents than its split holds it was given `--train-limit N`, "
                  "which when this file was made took the first N training documents (RT's order is mixed, BBC's is "
                  "by class); it now takes a seeded hash sample (docs/training.md)."]
    elif limited:
        lines += ["", "Runs given `--train-limit N` trained on a seeded hash sample of N training documents."]
    return lines + [""] + target_lines(exits, n)


def target_lines(exits: list[dict], n: int | None) -> list[str]:
    lines = ["**Where the target holds** (worked out from the table):", ""]
    for rule in sorted({r["rule"] for r in exits}):
        rs = [r for r in exits if r["rule"] == rule]
        judged = [(r, *verdict(r)) for r in rs if verdict(r)[0] is not None]
        good = [r for r, ok, _ in judged if ok]
        bad = [f"{r['data']} seed {r['seed']} ({why})" for r, ok, why in judged if not ok]
        line = (f"- **{rule}: on {len(good)} of {len(judged)} runs.** "
                f"{_span([100 * r['mean_layers_fraction'] for r in rs], '.0f')}% of L - k "
                f"({_span([r['mean_layers'] for r in rs], '.2f')} of {n} upper layers per document), "
                f"{_span([r['loss_points_vs_no_exits'] for r in rs], '+.2f')} points against the same model "
                "with every layer run.")
        if bad:
            line += " Not on " + ", ".join(bad) + "."
        lines.append(line)
    if any(r["rule"] == "patience" for r in exits) and n:
        lines.append(f"- patience stops a document once two exits in a row agree, so with L - k = {n} it runs at "
                     f"least 2 of {n} layers: its floor is {200 / n:.0f}% of L - k. A patience that validation "
                     "refuses leaves the next, larger one, which may never stop early (100%).")
    plain = [r for r in exits if r.get("test_accuracy_plain_model") is not None]
    for data, seed in sorted({(r["data"], r["seed"]) for r in plain}):
        rs = [r for r in plain if (r["data"], r["seed"]) == (data, seed)]
        p = rs[0]["test_accuracy_plain_model"]
        lines.append(f"- Against a plain task model trained without exits ({data} seed {seed}: {_pct(p)}): "
                     + ", ".join(f"{r['rule']} {abs(r['loss_points_vs_plain_model']):.2f} points "
                                 f"{'below' if r['loss_points_vs_plain_model'] >= 0 else 'above'} it"
                                 for r in rs)
                     + "; the same models with every layer run: "
                     + ", ".join(f"{r['rule']} {_pct(r['test_accuracy_no_exits'])}" for r in rs) + ".")
    for (data, rule), rs in sorted(_by(exits, ("data", "rule")).items()):
        if len(rs) > 1:
            lines.append(f"- Seeds' spread, {data} {rule} ({len(rs)} seeds): every layer "
                         f"{_span([100 * r['test_accuracy_no_exits'] for r in rs], '.2f')}, loss "
                         f"{_span([r['loss_points_vs_no_exits'] for r in rs], '+.2f')} points.")
    for data, rs in sorted(_by(exits, ("data",)).items()):
        val = rs[0].get("validation") or {}
        if val.get("documents") and val.get("budget") is not None:
            allowed = math.floor(val["budget"] / 100 * val["documents"] + 1e-9)
            lines.append(f"- The budget is counted on validation: {val['budget']:g} point of {data}'s "
                         f"{val['documents']:,} validation documents lets a threshold lose {allowed} document(s) there.")
    lines += budget_lines(exits)
    measured = "; ".join(f"{d} {rule} seed(s) {', '.join(str(r['seed']) for r in rs)}"
                         for (d, rule), rs in sorted(_by(exits, ("data", "rule")).items()))
    lines.append(f"- Measured: {measured}. Anything else (other seeds, rules, data sets) is not in this file.")
    return lines + [""]


def budget_lines(exits: list[dict]) -> list[str]:
    """What each run's threshold budget was measured against (its validation record's `reference`; none: trained
    before the head was the reference, DACT's mixture) and the runs whose threshold is out of budget."""
    lines = []
    old = [r for r in exits if (r.get("validation") or {}).get("budget") is not None
           and reference_of(r["rule"], r["validation"]) == "mixture"]
    if old:
        lines.append("- Thresholds chosen on validation against DACT's mixture with every layer run, not the head "
                     "(trained before the budget's reference was the task head, docs/depth.md): "
                     + ", ".join(f"{r['data']} {r['rule']} seed {r['seed']}" for r in old) + ".")
    for r in exits:
        v = r.get("validation") or {}
        if v.get("within_budget") is False:
            mixed = f", the mixture {_pct(v['accuracy_mixture'])}" if v.get("accuracy_mixture") is not None else ""
            lines.append(f"- Out of budget, {r['data']} {r['rule']} seed {r['seed']}: no threshold kept validation "
                         f"accuracy within {v['budget']:g} point of the head's {_pct(v['accuracy_all_layers'])}"
                         f"{mixed}; the most accurate was kept ({_pct(v['accuracy'])}).")
    return lines


def _by(runs: list[dict], keys: tuple[str, ...]) -> dict:
    out: dict = {}
    for r in runs:
        out.setdefault(tuple(r[k] for k in keys) if len(keys) > 1 else r[keys[0]], []).append(r)
    return out


def _dps(doc: dict, path: str):
    return (doc["paths"].get(path) or {}).get("documents_per_second")


def _speed_of(run: dict, speed: dict) -> tuple | None:
    """(key, file, doc) of a run's speed file: the one named DATA-RULE-sSEED, else the first (by name) that
    names the run's task model."""
    key = f"{run['data']}-{run['rule']}-s{run['seed']}"
    if key in speed:
        return (key, *speed[key])
    same = [(k, *speed[k]) for k in sorted(speed) if speed[k][1].get("model") == run.get("model")]
    return (key, *same[0][1:]) if same else None


def speed_lines(g: str, v: dict) -> list[str]:
    runs = [r for r in v["doc"]["runs"] if r["rule"] != "none"]
    rows = [row for row in (_speed_of(r, v["speed"]) for r in runs) if row]
    if not rows:
        return ["### ONNX Runtime, int8", "", f"No speed file (onnx-*.json, tools/exit_speed.py) for {_title(g)} in "
                "docs/results/depth/.", ""]
    lines = ["### ONNX Runtime, int8: documents per second with and without exits", "",
             "| data, rule, seed | documents | plain int8 | exit graphs int8, every layer | exit graphs int8, with exits "
             "| mean layers | speed-up vs every layer | vs plain int8 | accuracy plain / every layer / exits |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, _, doc in rows:
        p = doc["paths"]
        plain, every, ex = p["plain-int8"], p["exits-int8-every-layer"], p["exits-int8"]
        lines.append(f"| {key} | {doc['documents']} | {plain['documents_per_second']:.1f} | "
                     f"{every['documents_per_second']:.1f} | {ex['documents_per_second']:.1f} | {ex['mean_layers']:.2f} | "
                     f"{ex['documents_per_second'] / every['documents_per_second']:.2f}x | "
                     f"{ex['documents_per_second'] / plain['documents_per_second']:.2f}x | "
                     f"{_pct(plain['accuracy'])} / {_pct(every['accuracy'])} / {_pct(ex['accuracy'])} |")
    threads = sorted({d.get("threads") for _, _, d in rows})
    batch = sorted({d.get("batch_size") for _, _, d in rows})
    lines += ["", f"Documents per second over the test split, batches of {'/'.join(map(str, batch))}, "
              f"{'/'.join(map(str, threads))} ONNX Runtime thread(s), medians of the timed rounds (the paths run in "
              "turns). *plain int8* is what `erpack export --quantize dynamic` ships for the task model (one graph, "
              "with its exclusion of sensitive MatMuls); *exit graphs* are the per-layer graphs of `NAME.exits-int8/`, "
              "as that export quantized them when the file was made; *every layer* runs them with `--no-early-exit`.",
              ""]
    for key, _, doc in rows:
        p = doc["paths"]
        ex, every = p["exits-int8"], p["exits-int8-every-layer"]
        share = ex["mean_layers"] / (every["mean_layers"] or 1)
        line = (f"- {key}: the exits run {ex['documents_per_second'] / every['documents_per_second']:.2f}x the same "
                f"graphs to the end at {100 * share:.0f}% of the layers (compute bound {1 / share:.2f}x)")
        fx = p.get("exits-fp32")
        if fx:
            line += (f"; fp32 with exits: accuracy {_pct(fx['accuracy'])} against int8's {_pct(ex['accuracy'])}, mean "
                     f"layers {fx['mean_layers']:.3f} against {ex['mean_layers']:.3f}")
        lines.append(line + ".")
    chain = [(key, _dps(doc, "exits-fp32-every-layer"), _dps(doc, "plain-fp32")) for key, _, doc in rows]
    chain = [c for c in chain if c[1] and c[2]]
    if chain:
        lines += ["", "#### One graph with control flow, or one graph per layer", "",
                  "The exit graphs run every layer as a chain of per-layer graphs. Run to the end (no document stops), "
                  "that chain against the single upper graph, same data, fp32, documents/s: "
                  + "; ".join(f"{k} {a:.1f} against {b:.1f} ({100 * (a / b - 1):+.0f}%)" for k, a, b in chain)
                  + ". A single graph with control flow could at best save the per-call cost of the chain, and would "
                  "have to compact the batch inside an ONNX `Loop` to let documents leave; the per-layer graphs do the "
                  "compaction as a numpy step between calls, so erpack writes per-layer graphs."]
    return lines + [""]


def pruned_lines(groups: dict, folder: Path) -> list[str]:
    files = {f: d for g in groups.values() for f, d in g["speed"].values()}
    parts = [comparison_lines(c, files, folder) for c in PRUNED
             if c["group"] in groups and c["exits"] in files and c["combined"] in files]
    if not parts:
        return []
    lines = ["## Exits on a pruned task model", "",
             "Issue 22 asks that exits combined with a pruning-adapter beat the faster of the two alone.", ""]
    for part in parts:
        lines += part
    return lines


def comparison_lines(c: dict, files: dict, folder: Path) -> list[str]:
    ex, co = files[c["exits"]]["paths"], files[c["combined"]]["paths"]
    base = ex["plain-int8"]["documents_per_second"]
    rows = [("unpruned, plain graph", ex["plain-int8"]), ("exits alone", ex["exits-int8"]),
            ("pruning alone (the pruned model's plain graph)", co["plain-int8"]),
            ("pruned + exits", co["exits-int8"])]
    speed = {name: p["documents_per_second"] for name, p in rows}
    combined, exits_alone, pruning_alone = speed["pruned + exits"], speed["exits alone"], speed[rows[2][0]]
    holds = combined > max(exits_alone, pruning_alone)
    lines = [f"### {c['title']}", "",
             f"From `{c['exits']}` and `{c['combined']}` (ONNX Runtime int8): "
             + ("**it holds here**: " if holds else "**it does not hold here**: ")
             + f"the combination runs {combined / pruning_alone:.2f}x pruning alone and "
             f"{combined / exits_alone:.2f}x exits alone.", "",
             "| ONNX Runtime int8 | documents/s | x unpruned plain | test accuracy | mean layers |",
             "|---|---|---|---|---|"]
    for name, p in rows:
        lines.append(f"| {name} | {p['documents_per_second']:.1f} | {p['documents_per_second'] / base:.2f}x | "
                     f"{_pct(p['accuracy'])} | {p['mean_layers']:.2f} |")
    longer = files.get(c.get("longer"))
    if longer:
        lp = longer["paths"]
        gain = lp["exits-int8"]["documents_per_second"] / lp["plain-int8"]["documents_per_second"]
        lines += ["", f"Exits trained longer on the pruned model (`{c['longer']}`): "
                  f"{lp['exits-int8']['mean_layers']:.2f} layers, test accuracy {_pct(lp['exits-int8']['accuracy'])} "
                  f"({_pct(lp['exits-int8-every-layer']['accuracy'])} every layer); its exit graphs ran "
                  f"{gain:.2f}x its plain int8 graph, and run to the end "
                  f"{lp['exits-int8-every-layer']['documents_per_second'] / lp['plain-int8']['documents_per_second']:.2f}x "
                  f"it. Pruning alone x this: {pruning_alone / base:.2f} x {gain:.2f} = {pruning_alone / base * gain:.2f}x "
                  f"the unpruned graph against exits alone's {exits_alone / base:.2f}x; that product spans two runs, so "
                  "read it as a hint, not a measurement."]
    notes = folder / c["notes"]
    if notes.exists():
        lines += ["", notes.read_text().strip()]
    return lines + [""]


def files_lines(groups: dict) -> list[str]:
    lines = ["## Speed files", ""]
    for g, v in groups.items():
        for _, (name, doc) in sorted(v["speed"].items()):
            where = machine_line(doc["machine"]) if doc.get("machine") else "machine not recorded"
            what = _title(g) if g else ("a pruned-model comparison" if name in PRUNED_FILES else "no runs file")
            lines.append(f"- `{name}` ({what}): `{doc.get('command', '?')}`; {where}")
    return lines + [""]


HEAD = """# Early exit: accuracy, layers run and ONNX Runtime speed

Made by `{tool}` from the result files in docs/results/depth/: `*-runs.json` (tools/exit_table.py) and
`onnx-*.json` (tools/exit_speed.py); `--check` fails when this page differs from what they render.

What [docs/depth.md](../depth.md#early-exit) promises, measured: an encoder split at k, `upper` mode, exits
trained with `--early-exit RULE`, the threshold chosen on validation for the default budget of 0.5 point.
Issue 22's target: mean layers at most {share}% of L - k at no more than {points} below the
same task model without exits; documents per second through ONNX Runtime int8 against the same model without
exits. Times come from a shared machine: compare figures within one table, not across tables.

## Commands

Per data set (corpus files of the built-in data sets, `id`, `text`, `label`, `split` per line, written from
`erpack.assets.load_dataset`), one cache, then one training run per rule and seed:

```
erpack encode corpus-DATA.jsonl -o cache-DATA --model MODEL --layer K --codec int8z [--max-length 128]
erpack train cache-DATA --labels corpus-DATA.jsonl --mode upper --seed S [--train-limit N] \\
    --early-exit RULE -o tm-DATA-RULE-sS --json > WORK/train-DATA-RULE-S.out
python tools/exit_table.py WORK docs/results/depth/MODEL-kK-runs.json
python tools/exit_speed.py tm-DATA-RULE-sS cache-DATA corpus-DATA.jsonl GRAPHS docs/results/depth/onnx-[MODEL-kK-]DATA-RULE-sS.json
python tools/exit_page.py                                      # this page
```

`tools/exit_table.py` also scores each model with `erpack eval --no-early-exit` (the same task model with
every layer run: its own head, what it answers without exits). `tools/exit_speed.py` exports the model
(`erpack export --quantize dynamic --calibration-cache`), reads the test split into memory and runs the paths
in turns (the first round a warm-up, medians).
"""


def page_text(folder: Path = RESULTS) -> str:
    """The page from the result files in `folder` (and its notes files) alone."""
    folder = Path(folder)
    groups = read_groups(folder)
    points = " / ".join(f"{p:g} point ({d.upper() if len(d) <= 3 else d})" for d, p in TARGET["points"].items())
    lines = [HEAD.format(tool=TOOL, share=f"{100 * TARGET['share']:.0f}", points=points)]
    for g, v in groups.items():
        if not g:
            continue
        lines += [f"## {_title(g)}", ""]
        if v["notes"]:
            lines += [f"Notes of these runs ([depth/{g}-notes.md](depth/{g}-notes.md)):", "", v["notes"], ""]
        lines += accuracy_lines(g, v) + speed_lines(g, v)
    lines += pruned_lines(groups, folder) + files_lines(groups)
    return "\n".join(lines).rstrip("\n") + "\n"
