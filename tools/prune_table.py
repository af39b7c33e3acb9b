"""Pruning levels against the unpruned task model: upper-stack parameters, CPU latency, test accuracy.

    python tools/prune_table.py --datasets rt,bbc --levels 0.2,0.4,0.6 --work runs/prune \
        --train-limit 3000 --epochs 2 --recovery-epochs 1 --seeds 0
    python tools/prune_table.py --work runs/prune --table-only      # the table from results.jsonl

Per (data set, seed): train the unpruned task model from the cache (`erpack train --mode upper`),
score importance once on --samples training documents, then per level p prune p of the upper
stack's heads and p of its neurons and recover with LoRA (distilling the unpruned logits). Every
model is scored on the test split; latency is one forward pass of the upper stack on a batch of 32
test documents (padded to the batch's longest), all levels timed in turns (A, B, C, ...), median
of --repeats rounds after a warm-up. Caches must exist (see docs/pruning.md for the encode
commands). Rows are appended to WORK/results.jsonl as they finish. Prints a human table, then one
JSON document as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

DATASETS = {"rt": "rotten_tomatoes", "bbc": "bbc"}


def load_results(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def append(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def subset_labels(work: Path, ds: str, limits: dict[str, int | None], how: str = "hash") -> str:
    """A label file with N documents of each split, for a CPU-sized run.

    how="hash": the N with the smallest sha1(id) (a fixed pseudo-random sample; use it for data sets
    stored by class, such as BBC); how="first": the first N in the data set's order.
    """
    import hashlib

    from erpack.assets import load_dataset

    if not any(limits.values()):
        return DATASETS[ds]
    tag = "-".join(f"{s}{n}" for s, n in limits.items() if n) + ("" if how == "first" else f"-{how}")
    path = work / f"labels-{ds}-{tag}.jsonl"
    if not path.exists():
        counts = {s: 0 for s in limits}
        rows = []
        records = list(load_dataset(DATASETS[ds]))
        if how == "hash":
            records.sort(key=lambda r: hashlib.sha1(r.id.encode()).hexdigest())
        for r in records:
            n = limits.get(r.split)
            if n is not None and counts[r.split] >= n:
                continue
            counts[r.split] = counts.get(r.split, 0) + 1
            rows.append(json.dumps({"id": r.id, "label": r.label, "split": r.split}))
        path.write_text("\n".join(rows) + "\n")
    return str(path)


def latency_batch(reader, data, batch_size: int):
    """32 test documents around the median length, padded: (hidden (B, T, H), mask (B, T))."""
    from erpack.train.data import pad_batch

    test = data.splits["test"]
    order = sorted(range(len(test)), key=lambda i: data.lengths["test"][i])
    mid = max(0, len(order) // 2 - batch_size // 2)
    rows = order[mid:mid + batch_size]
    return pad_batch([reader.get(test[i].id) for i in rows])


def run_dataset(args, ds: str, seed: int, out: Path) -> list[dict]:
    from erpack.prune import Fractions, RecoveryConfig, prune_task_model, upper_params
    from erpack.prune.budget import interleaved_latency
    from erpack.prune.importance import score_importance
    from erpack.prune.task import importance_batches
    from erpack.store import CacheReader
    from erpack.train import TaskModel, TrainConfig, train_from_cache
    from erpack.train.trainer import prepare_data

    work = Path(args.work)
    cache = work / f"cache-{args.model}-{ds}"
    labels = subset_labels(work, ds, {"train": args.train_limit, "validation": args.validation_limit,
                                      "test": args.test_limit}, args.subset)
    base_dir = work / f"{args.model}-{ds}-s{seed}-base"
    t0 = time.perf_counter()
    if not (base_dir / "erpack_task.json").exists():
        train_from_cache(cache, labels, mode="upper", output=base_dir,
                         config=TrainConfig(epochs=args.epochs, seed=seed, train_limit=args.train_limit, lr=args.lr))
    base = TaskModel.load(base_dir)
    base_seconds = time.perf_counter() - t0
    models = {0.0: base}
    rows = []
    with CacheReader(cache) as reader:
        data = prepare_data(reader, labels, base.task, train_limit=args.train_limit, labels=base.labels)
        imp = score_importance(base.model, base.layer, importance_batches(reader, data, args.samples, 32, "cpu", seed),
                               base.task)
        hidden, mask = latency_batch(reader, data, 32)
    base_test = base.info["training"]["recycled"]["test"]
    rows.append({"dataset": ds, "seed": seed, "level": 0.0, "params": upper_params(base.model, base.layer),
                 "test": base_test, "seconds": base_seconds, "plan": None})
    for level in args.levels:
        t1 = time.perf_counter()
        tm, s = prune_task_model(base, cache, labels, Fractions(level, level), importance=imp,
                                 output=work / f"{args.model}-{ds}-s{seed}-p{int(level * 100)}",
                                 recovery=RecoveryConfig(rank=args.rank, epochs=args.recovery_epochs, lr=1e-3,
                                                         distill=not args.no_distill),
                                 train_cfg=TrainConfig(epochs=args.recovery_epochs, lr=1e-3, seed=seed,
                                                       train_limit=args.train_limit),
                                 overwrite=True)  # the tool's work folder: a rerun replaces its pruned models
        models[level] = tm
        rows.append({"dataset": ds, "seed": seed, "level": level, "params": s["params_after"], "test": s["test"],
                     "seconds": time.perf_counter() - t1, "plan": s["plan"] | {"layers": None}})
    uppers = [models[lv].upper for lv in sorted(models)]
    times = interleaved_latency(uppers, hidden, mask, repeats=args.repeats, warmup=2)
    for row, t in zip(sorted(rows, key=lambda r: r["level"]), times):
        row.update(latency_ms=t * 1e3, latency_batch=list(hidden.shape[:2]), model=args.model, layer=base.layer,
                   train_limit=args.train_limit, validation_limit=args.validation_limit, test_limit=args.test_limit,
                   epochs=args.epochs, recovery_epochs=args.recovery_epochs, threads=torch.get_num_threads(),
                   samples=args.samples, lr=args.lr, subset=args.subset)
        append(out, row)
    return rows


def table(rows: list[dict]) -> tuple[list[str], dict]:
    """One line per (model, data set, level): accuracy mean and sd over seeds, its difference to the
    unpruned model of the same seed (mean, and min to max over seeds), and the latency ratio to the
    unpruned stack taken per seed (levels of one seed are timed in the same interleaved rounds), median."""
    groups: dict[tuple, dict[int, dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["dataset"], r["level"]), {})[r["seed"]] = r
    lines = [f"{'model':<7} {'data':<5} {'pruned':>6} {'upper params':>12} {'x':>5} {'latency ms':>10} {'x':>5} "
             f"{'test acc (sd)':>15} {'delta (min..max)':>20} {'seeds':>5}"]
    summary = {}
    for (model, ds, level), by_seed in sorted(groups.items()):
        base = groups.get((model, ds, 0.0), {})
        seeds = sorted(s for s in by_seed if s in base)
        if not seeds:
            continue
        accs = [by_seed[s]["test"]["accuracy"] for s in seeds]
        deltas = [(by_seed[s]["test"]["accuracy"] - base[s]["test"]["accuracy"]) * 100 for s in seeds]
        ratios = [by_seed[s]["latency_ms"] / base[s]["latency_ms"] for s in seeds]
        acc, sd = statistics.mean(accs), (statistics.stdev(accs) if len(accs) > 1 else 0.0)
        lat = statistics.median(by_seed[s]["latency_ms"] for s in seeds)
        params = by_seed[seeds[0]]["params"]
        row = {"model": model, "dataset": ds, "level": level, "params": params,
               "params_ratio": params / base[seeds[0]]["params"], "latency_ms": lat,
               "latency_ratio": statistics.median(ratios), "accuracy": acc, "accuracy_sd": sd,
               "delta_points": statistics.mean(deltas), "delta_min": min(deltas), "delta_max": max(deltas),
               "seeds": len(seeds)}
        summary.setdefault(f"{model}/{ds}", []).append(row)
        spread = f"{row['delta_points']:+.2f} ({min(deltas):+.2f}..{max(deltas):+.2f})"
        lines.append(f"{model:<7} {ds:<5} {level:>6.0%} {params / 1e6:>11.2f}M {row['params_ratio']:>5.2f} "
                     f"{lat:>10.1f} {row['latency_ratio']:>5.2f} {acc:>8.4f} ({sd:.4f}) {spread:>20} {len(seeds):>5}")
    verdicts = {}
    for key, rs in summary.items():
        ok = [r for r in rs if r["level"] > 0 and r["delta_points"] >= -1.0]
        best = max(ok, key=lambda r: r["level"]) if ok else None
        verdicts[key] = {"largest_level_within_1_point": best["level"] if best else None,
                         "latency_ratio": best["latency_ratio"] if best else None,
                         "meets_0_65": bool(best and best["latency_ratio"] <= 0.65)}
        lines.append(f"{key}: largest level within 1 point: "
                     + (f"{best['level']:.0%}, latency x{best['latency_ratio']:.2f} "
                        f"({'meets' if verdicts[key]['meets_0_65'] else 'misses'} <= 0.65)" if best else "none"))
    return lines, {"rows": summary, "verdicts": verdicts}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="runs/prune")
    p.add_argument("--model", default="minilm", help="name used in the cache folder names (cache-MODEL-DATASET)")
    p.add_argument("--datasets", default="rt,bbc")
    p.add_argument("--levels", default="0.2,0.4,0.6")
    p.add_argument("--seeds", default="0")
    p.add_argument("--train-limit", type=int, default=None)
    p.add_argument("--validation-limit", type=int, default=None, help="first N validation documents only")
    p.add_argument("--test-limit", type=int, default=None, help="first N test documents only")
    p.add_argument("--subset", choices=["hash", "first"], default="hash", help="which N documents the limits keep: "
                   "a fixed sample by sha1 of the id (default), or the first N in the data set's order")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    p.add_argument("--epochs", type=int, default=2, help="epochs of the unpruned task model")
    p.add_argument("--lr", type=float, default=1e-4, help="lr of the unpruned task model (mode upper)")
    p.add_argument("--recovery-epochs", type=int, default=1)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--samples", type=int, default=512)
    p.add_argument("--repeats", type=int, default=21)
    p.add_argument("--no-distill", action="store_true")
    p.add_argument("--table-only", action="store_true")
    args = p.parse_args(argv)
    args.levels = [float(x) for x in args.levels.split(",") if x]
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    out = Path(args.work) / "results.jsonl"
    if not args.table_only:
        done = {(r["model"], r["dataset"], r["seed"]) for r in load_results(out)}
        for ds in args.datasets.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                if (args.model, ds, seed) not in done:
                    run_dataset(args, ds, seed, out)
    results = load_results(out)
    lines, summary = table(results)
    threads = sorted({r["threads"] for r in results if "threads" in r}) or [torch.get_num_threads()]
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpus": os.cpu_count(), "torch_threads": threads, "torch": torch.__version__}
    print("\n".join(lines))
    print(f"machine: {machine}")
    print(json.dumps({"machine": machine, **summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
