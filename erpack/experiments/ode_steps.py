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

from erpack.assets import resolve_model
from erpack.experiments.page import first_n_note, machine_line
from erpack.runtime.device import resolve_device
from erpack.runtime.timing import describe_machine, interleaved_medians
from erpack.store import CacheReader
from erpack.train.labels import TRAIN_SUBSET

RESULTS = Path("docs/results/depth")
CACHE_COMMANDS = (  # how the caches of the runs on docs/results/ode-steps.md were made
    "erpack encode rotten_tomatoes -o WORK/cache-minilm-rt --layer 3 --codec fp16",
    "erpack encode bbc -o WORK/cache-minilm-bbc --layer 3 --codec fp16 --max-length 128",
    "erpack encode WORK/bbc-hash-800-200-500.jsonl -o WORK/cache-mpnet-bbc --model mpnet --layer 6 --codec fp16 "
    "--max-length 128",
    "python tools/ode_steps.py --tiny-albert WORK/tiny-albert2",
    "erpack encode WORK/rt-file-2000-400-1000.jsonl -o WORK/cache-albert2-rt --model WORK/tiny-albert2 --layer 2 "
    "--codec fp16",
    "erpack encode MPNET/corpus-bbc.jsonl -o MPNET/cache-bbc --model mpnet --layer 6 --codec int8z --max-length 128",
    "erpack encode MPNET/corpus-rt.jsonl -o MPNET/cache-rt --model mpnet --layer 6 --codec int8z",
)
PAGE = Path("docs/results/ode-steps.md")


def run_steps(args) -> dict:
    """Train the shared-block task model of `args` (the tool's options) and score it at every S."""
    import torch

    from erpack.depth.distill import ShareSpec
    from erpack.train import TrainConfig
    from erpack.train.evaluation import evaluate
    from erpack.train.trainer import train_from_cache

    torch.set_num_threads(args.threads)
    out = Path(args.work) / args.name
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, patience=args.patience,
                      train_limit=args.train_limit, device="cpu")
    t0 = time.perf_counter()
    s = train_from_cache(args.cache, args.labels, output=out, config=cfg, overwrite=True, skip_missing=True,
                         shared_block=ShareSpec(distill_epochs=args.distill_epochs, init=args.block_init,
                                                beta_docs=args.beta_docs,
                                                random_steps=getattr(args, "random_steps", False),
                                                random_distill=getattr(args, "random_distill", False)))
    train_seconds = time.perf_counter() - t0
    record = json.loads((out / "erpack_task.json").read_text())["ode"]
    n = record["steps_trained"]
    rows = []
    for steps in sorted(set(args.eval_steps or range(1, n)) - {n}) + [n]:
        if steps == n:  # L-k unit steps: the plain upper stack, scored on the test split by training already
            metrics, documents, seconds = s.recycled.test, s.documents.get("test"), None
        else:
            e = evaluate(out, args.cache, args.labels, split="test", skip_missing=True, device="cpu", steps=steps)
            metrics, documents, seconds = e.metrics, e.documents, e.seconds
        rows.append({"steps": steps, "beta": record["betas"][str(steps)], "mean_layers": float(steps),
                     "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "documents": documents,
                     "validation": record["validation"].get(str(steps), {}), "seconds": seconds})
    full = rows[-1]["accuracy"]
    half = next((r for r in rows if r["steps"] == max(1, n // 2)), None) or rows[0]
    return {"name": args.name, "command": "python " + " ".join(sys.argv), "machine": describe_machine(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cache": str(args.cache),
            "labels": args.labels, "model": s.model, "layer": s.layer, "steps_trained": n,
            "documents": s.documents, "config": {"epochs": args.epochs, "distill_epochs": args.distill_epochs,
                                                 "block_init": args.block_init, "train_limit": args.train_limit,
                                                 "train_subset": TRAIN_SUBSET,
                                                 "beta_docs": args.beta_docs,
                                                 "random_steps": getattr(args, "random_steps", False),
                                                 "random_distill": getattr(args, "random_distill", False),
                                                 "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                                                 "patience": args.patience},
            "block": {k: v for k, v in record["block"].items() if k != "distill"},
            "random_steps": record.get("random_steps"),
            "distill": record["block"].get("distill", []), "train_seconds": train_seconds,
            "fine_tune": {"best_epoch": s.recycled.best_epoch, "best_validation": s.recycled.best_validation},
            "rows": rows,
            "half_steps": {"steps": half["steps"], "accuracy": half["accuracy"], "all_steps_accuracy": full,
                           "delta_points": 100 * (half["accuracy"] - full),
                           "within_1_point": bool(100 * (full - half["accuracy"]) <= 1.0)}}


def step_runs() -> list[dict]:
    """Every docs/results/depth/ode-NAME.json of a training run: not the graph timing (ode-unroll.json), the
    init comparison (ode-init-*), tools/depth_plot.py's ONNX timings (ode-speed-*) nor the int8 check (ode-int8-*)."""
    return [json.loads(p.read_text()) for p in sorted(RESULTS.glob("ode-*.json"))
            if p.name != "ode-unroll.json" and not p.name.startswith(("ode-init-", "ode-speed-", "ode-int8-"))]


def trained_at(r: dict) -> str:
    """How a run's task model was trained: "random S" (--random-steps), "random S, distil too" (with
    --random-distill) or "L-k steps"."""
    config = r.get("config") or {}
    if config.get("random_steps"):
        return "random S, distil too" if config.get("random_distill") else "random S"
    return "L-k steps"


def render() -> str:
    """The Markdown table of every docs/results/depth/ode-*.json."""
    lines = ["| run | model, k | trained at | L-k | steps S | beta | mean layers | test accuracy | macro-F1 | "
             "Δ vs L-k (points) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    verdicts = []
    for r in step_runs():
        full = r["rows"][-1]["accuracy"]
        for row in r["rows"]:
            lines.append(f"| {r['name']} | {r['model']}, {r['layer']} | {trained_at(r)} | {r['steps_trained']} | "
                         f"{row['steps']} | "
                         f"{row['beta']:.3g} | {row['mean_layers']:g} | {row['accuracy']:.4f} | {row['macro_f1']:.4f} | "
                         f"{100 * (row['accuracy'] - full):+.2f} |")
        n, by_steps = r["steps_trained"], {row["steps"]: row for row in r["rows"]}
        if by_steps[n]["macro_f1"] < 0.7 * by_steps[n]["accuracy"]:  # one class takes most predictions
            verdicts.append(f"- {r['name']}: at {n} steps the task model predicts mostly one class (macro-F1 "
                            f"{by_steps[n]['macro_f1']:.3f} at accuracy {by_steps[n]['accuracy']:.3f}): it learnt "
                            "little, so its steps say little")
        for half in sorted({1, n // 2, (n + 1) // 2} - {0, n}):  # S = 1 and both neighbours of L-k/2 (L-k odd)
            if half in by_steps:
                delta = 100 * (by_steps[half]["accuracy"] - full)
                verdicts.append(f"- {r['name']}: {half} of {n} steps, {delta:+.2f} points: "
                                + ("within 1 point" if delta >= -1.0 else "**not** within 1 point"))
    return "\n".join(lines + [""] + verdicts) + "\n"


def _same_setup(fixed: dict, rand: dict) -> bool:
    """Two runs that differ only in --random-steps: same cache, labels, documents and the options both
    record (an older file lacks the options added since, e.g. patience)."""
    a, b = fixed.get("config") or {}, rand.get("config") or {}
    same = all(a[k] == b[k] for k in set(a) & set(b) - {"random_steps", "random_distill"})
    return same and all(fixed.get(k) == rand.get(k) for k in ("cache", "labels", "model", "layer", "documents"))


def render_random() -> list[str]:
    """Fixed (L-k steps) against random-S fine-tuning: for each --random-steps run and the fixed run of the
    same setup, test accuracy at every S and the loss against each model's own L-k steps."""
    runs = step_runs()
    pairs = sorted(((f, r) for r in runs if trained_at(r) != "L-k steps"
                    for f in runs if trained_at(f) == "L-k steps" and _same_setup(f, r)),
                   key=lambda p: (p[0]["model"], p[0]["layer"], p[0]["labels"], trained_at(p[1]),
                                  p[0]["config"].get("seed", 0)))
    if not pairs:
        return []
    lines = ["| runs (fixed / random) | seed | steps S | L-k steps: accuracy | random S: accuracy | "
             "random - fixed (points) | random S: Δ vs its L-k (points) |", "|---|---:|---:|---:|---:|---:|---:|"]
    verdicts, groups = [], {}
    for f, r in pairs:
        fixed = {row["steps"]: row["accuracy"] for row in f["rows"]}
        rand = {row["steps"]: row["accuracy"] for row in r["rows"]}
        groups.setdefault((f["model"], f["layer"], Path(f["labels"]).name, json.dumps(f["documents"]), trained_at(r)),
                          []).append((fixed, rand))
        n = r["steps_trained"]
        for s in sorted(set(fixed) & set(rand)):
            lines.append(f"| {f['name']} / {r['name']} ({trained_at(r)}) | {r['config'].get('seed')} | {s} | "
                         f"{fixed[s]:.4f} | {rand[s]:.4f} | {100 * (rand[s] - fixed[s]):+.2f} | {100 * (rand[s] - rand[n]):+.2f} |")
        if 1 in rand and n > 1:
            verdicts.append(_s1_verdict(r["name"], n, fixed, rand))
    for (model, layer, labels, _, kind), runs in groups.items():
        if len(runs) < 2:
            continue
        fixed, rand = ({s: sum(run[i][s] for run in runs) / len(runs) for s in runs[0][i]} for i in (0, 1))
        n = max(rand)
        for s in sorted(set(fixed) & set(rand)):
            lines.append(f"| **mean of {len(runs)} seeds** ({model} k = {layer}, {labels}; {kind}) | | {s} | "
                         f"{fixed[s]:.4f} | {rand[s]:.4f} | {100 * (rand[s] - fixed[s]):+.2f} | {100 * (rand[s] - rand[n]):+.2f} |")
        verdicts.append(_s1_verdict(f"mean of {len(runs)} seeds ({model} k = {layer}, {labels}; {kind})", n, fixed,
                                    rand))
    return lines + [""] + verdicts


def _s1_verdict(name: str, n: int, fixed: dict, rand: dict) -> str:
    """Whether one step of a random-steps model is within 1 point of its own L-k steps."""
    delta = 100 * (rand[1] - rand[n])
    return (f"- {name}: 1 of {n} steps, {delta:+.2f} points against its own {n} steps: "
            + ("within 1 point" if delta >= -1.0 else "**not** within 1 point")
            + f" (fixed: {100 * (fixed[1] - fixed[n]):+.2f}); at 1 step {100 * (rand[1] - fixed[1]):+.2f} and at "
            f"{n} steps {100 * (rand[n] - fixed[n]):+.2f} points against the fixed model")


def unrolled_against_loop(model: str = "minilm", k: int = 3, steps: int = 3, batch: int = 32, tokens: int = 40,
                          threads: int = 1, work: str = "runs/ode", runs: int = 15) -> dict:
    """One S-step graph (erpack export --steps S) against one block graph called S times plus a head graph:
    onnxruntime CPU latency (interleaved medians) on a random (batch, tokens) input, and their largest
    difference. What decided that erpack unrolls (docs/depth.md)."""
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification

    from erpack.depth.ode import OdeUpper, head_of, one_layer
    from erpack.export.onnx_export import export_upper
    from erpack.export.session import create_session

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


def tiny_albert_folder(folder, layers: int = 6, hidden: int = 128, seed: int = 0, init_range: float = 0.1) -> Path:
    """A randomly initialised ALBERT (one shared group over `layers` virtual layers) with MiniLM's word-piece
    tokenizer, saved as a model folder `erpack encode --model FOLDER` reads (no ALBERT weights install here).
    `init_range` is wider than ALBERT's 0.02: at 0.02 a random model hardly mixes tokens, and a task model
    trained from its layer-2 states learnt nothing (the majority class) on RT."""
    import torch
    from transformers import AlbertConfig, AlbertModel, AutoTokenizer


    folder = Path(folder)
    tok = AutoTokenizer.from_pretrained(resolve_model("minilm"))
    torch.manual_seed(seed)
    config = AlbertConfig(vocab_size=tok.vocab_size, embedding_size=64, hidden_size=hidden, num_hidden_layers=layers,
                          num_hidden_groups=1, num_attention_heads=4, intermediate_size=2 * hidden,
                          max_position_embeddings=512, pad_token_id=tok.pad_token_id, initializer_range=init_range)
    AlbertModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def compare_inits(cache: str, labels: str, train_limit: int = 500, held: int = 200, epochs: int = 1,
                  batch_size: int = 32, seed: int = 0) -> dict:
    """The block's two initial weights (mean of layers k..L-1, layer k) against the teacher's trajectory: the
    distillation loss (mean MSE over the L-k states plus the final state's) and the final state's MSE on
    `held` validation documents, before distillation and after `epochs` epochs on `train_limit` documents."""
    import copy

    import torch

    from erpack.depth.distill import INITS, ShareSpec, tie_block
    from erpack.depth.ode import OdeUpper
    from erpack.models.split import depth
    from erpack.train import TrainConfig
    from erpack.train.data import batch_plan, cache_source
    from erpack.train.modes import load_for_cache
    from erpack.train.shared import distill_block
    from erpack.train.trainer import prepare_data

    cfg = TrainConfig(batch_size=batch_size, seed=seed, train_limit=train_limit, device="cpu")
    dev = resolve_device("cpu")
    out = {"cache": cache, "labels": labels, "train_limit": train_limit, "train_subset": TRAIN_SUBSET, "held": held,
           "epochs": epochs,
           "command": "python " + " ".join(sys.argv), "machine": describe_machine(), "inits": {}}
    with CacheReader(cache) as reader:
        data = prepare_data(reader, labels, skip_missing=True, train_limit=train_limit, splits=("train", "validation"),
                            seed=seed)
        k = reader.meta["layer"]
        train = cache_source(reader, [e.id for e in data.splits["train"]], data.lengths["train"])
        ids = [e.id for e in data.splits["validation"][:held]]
        valid = cache_source(reader, ids, data.lengths["validation"][:held])
        _, teacher = load_for_cache(reader.meta, data.labels, data.task, seed)
        teacher.eval().requires_grad_(False)
        n = depth(teacher) - k
        want = OdeUpper(teacher, k, n, 1.0)

        @torch.no_grad()
        def measure(student) -> dict:
            got, total, final, count = OdeUpper(student, k, n, 1.0).eval(), 0.0, 0.0, 0
            for _, (hidden, mask) in valid.batches(batch_plan(valid.lengths, batch_size)):
                keep = mask.bool()
                per = [((a - b)[keep] ** 2).mean().item() for a, b in zip(got.trajectory(hidden, mask),
                                                                            want.trajectory(hidden, mask))]
                total, final, count = total + sum(per) / n + per[-1], final + per[-1], count + 1
            return {"loss": total / count, "final_mse": final / count}

        for init in INITS:
            student = copy.deepcopy(teacher)
            tie_block(student, k, init)
            before = measure(student)
            records = distill_block(teacher, student, k, train, cfg, ShareSpec(distill_epochs=epochs, init=init), dev)
            out["inits"][init] = {"before": before, "after": measure(student), "distill": records}
    out["model"], out["layer"] = reader.meta["model"]["name"], k
    return out


def page_body() -> list[str]:
    """docs/results/ode-steps.md below its title: each run's command and machine, the table, the verdicts,
    the block-init comparison and the graph timing (from the files in docs/results/depth/)."""

    lines = ["Test accuracy of one task model per run at every number of ODE steps S (erpack eval --steps S;",
             "the step size of each S chosen on validation when it was trained). mean layers = S block",
             "evaluations per document; Δ is against S = L-k, the stack as trained. One seed each, at",
             "reduced sizes (the training documents of each run are listed): the 2 cores were shared with other",
             "jobs (load average 2 to 10), so the seconds below are not speeds.", ""]
    runs = step_runs()
    lines += ["## Runs", ""]
    for r in runs:
        docs = ", ".join(f"{k} {v}" for k, v in r["documents"].items())
        lines.append(f"- **{r['name']}** ({r['date']}; documents: {docs}): `{r['command']}` on "
                     f"{machine_line(r['machine'])}; training {r['train_seconds']:.0f} s"
                     f"{first_n_note(r['config'].get('train_limit'), r['config'])}")
    lines += ["", "Caches (WORK = /tmp/ode-runs; the subset corpora are erpack.experiments.corpora.grid_corpus(WORK, "
              "\"rt\", (2000, 400, 1000)) and (WORK, \"bbc\", (800, 200, 500)); labels-bbc-train600-hash.jsonl is "
              "subset_labels(WORK, \"bbc\", {\"train\": 600}, \"hash\"); labels-mpnet-bbc-train120-val40.jsonl holds the "
              "first 120 train and 40 validation rows and every test row of bbc-hash-800-200-500.jsonl; MPNET = the MPNet "
              "early-exit work folder of [early-exit.md](early-exit.md), whose corpus-bbc.jsonl (400 training articles) "
              "and corpus-rt.jsonl (1,000 training reviews, 600 validation) are drawn as its MPNet notes say):", "", *[f"    {c}" for c in CACHE_COMMANDS], ""]
    lines += ["## Accuracy against steps", "", *render().rstrip("\n").splitlines(), ""]
    random = render_random()
    if random:
        lines += ["## Trained at L-k steps or at a random S", "",
                  "The same setup fine-tuned at L-k unit steps (the block's only step count in training) and with "
                  "`--random-steps` (each batch at S steps of size (L-k)/S, S drawn from 1..L-k; distillation at "
                  "L-k steps in both, unless `--random-distill` drew S there too). Both train the same epochs, so a "
                  "random-steps model runs about 1/(L-k) of its batches at L-k steps; each pair shares its seed "
                  "(distillation, batches, head), and when several "
                  "seeds were run their mean follows.", "", *random, ""]
    inits = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("ode-init-*.json"))]
    if inits:
        lines += ["## The block's initial weights", "",
                  "Distillation loss (mean MSE to the teacher's state after each upper layer, plus the final "
                  "state's) and the final state's MSE on held-out validation documents, before and after "
                  "distillation.", "",
                  "| cache | init | loss before | final MSE before | loss after | final MSE after |",
                  "|---|---|---:|---:|---:|---:|"]
        for c in inits:
            for init, v in c["inits"].items():
                lines.append(f"| {c['model']} k = {c['layer']} | {init} | {v['before']['loss']:.4f} | "
                             f"{v['before']['final_mse']:.4f} | {v['after']['loss']:.4f} | "
                             f"{v['after']['final_mse']:.4f} |")
        lines += [""] + [f"`{c['command']}` ({c['train_limit']} training documents{first_n_note(c['train_limit'], c)}, "
                         f"{c['epochs']} epoch(s), "
                         f"{c['held']} held out) on {machine_line(c['machine'])}." for c in inits] + [""]
    unroll = RESULTS / "ode-unroll.json"
    if unroll.exists():
        u = json.loads(unroll.read_text())
        lines += ["## One graph per S, or one block graph called S times", "",
                  f"{u['model']} k = {u['layer']}, S = {u['steps']}, batch {u['batch'][0]} x {u['batch'][1]} tokens, "
                  f"onnxruntime CPU, {u['threads']} thread(s), interleaved medians: the unrolled graph "
                  f"{u['unrolled_ms']:.1f} ms, the block graph called {u['steps']} times plus the head graph "
                  f"{u['loop_ms']:.1f} ms (largest difference {u['max_diff']:.1e}); sizes: "
                  + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in u["bytes"].items()) + ".",
                  f"`{u['command']}` on {machine_line(u['machine'])}.", ""]
    for path in sorted(RESULTS.glob("ode-int8-*.json")):
        lines += int8_lines(json.loads(path.read_text()), path.name)
    return lines


def int8_lines(doc: dict, name: str) -> list[str]:
    """The int8 graphs of each S before and after a shared block's weights were quantized at every step
    (ode-int8-*.json): MatMuls left in float, size, agreement with fp32, test accuracy."""
    lines = [f"## int8 of the unrolled graphs ({doc['model']} k = {doc['layer']}, {doc['data']})", "",
             "`erpack export --steps S --quantize dynamic` with the automatic float exclusions. The exporter writes "
             "a weight used at several steps as the initializer at its first use and an Identity of it at the "
             "others; the quantizer quantized only the first, so steps 2..S ran in float. Now every use reads the "
             "initializer, the block is quantized once, and a weight the exclusion rule leaves in float is float at "
             "every step.", "",
             "| code | S | weight MatMuls float / int8 | excluded by the rule | int8 MB (fp32 MB) | agreement with fp32 "
             "| test accuracy | int8 speed-up at export |",
             "|---|---|---|---|---|---|---|---|"]
    for g in doc["graphs"]:
        lines.append(f"| {g['code']} | {g['steps']} | {g['float_weight_matmuls']} / {g['int8_matmuls']} | "
                     f"{g['excluded']} | {g['int8_bytes'] / 1e6:.2f} ({g['fp32_bytes'] / 1e6:.2f}) | "
                     f"{100 * g['agreement']:.1f}% of {g['agreement_rows']} | {100 * g['test_accuracy']:.2f} | "
                     f"{g['export_speedup']:.2f}x |")
    lines += ["", f"*agreement*: argmax against the fp32 graph on cached records of the second half of the cache "
              f"(the rule chooses on the first); *test accuracy*: `erpack predict` on the {doc['graphs'][0]['test_documents']} "
              "test documents; *speed-up*: the export's own timing of one batch "
              f"({' x '.join(map(str, doc['graphs'][0]['export_timing_batch']))} tokens) against fp32, on a loaded machine. "
              f"{doc['how']}. Task model {doc['task_model']}; commands: "
              + "; ".join(f"`{c}`" for c in doc["commands"]) + f"; on {machine_line(doc['machine'])}.", ""]
    if any(p.name.startswith("ode-speed-") for p in RESULTS.glob("ode-speed-*.json")):
        lines += ["The ODE points of [adaptive-depth.md](adaptive-depth.md) (ode-speed-*.json) were timed on int8 "
                  "graphs exported before this change, whose steps after the first ran in float: their speeds against "
                  "S = L-k overstate what fewer steps gain.", ""]
    return lines
