"""Accuracy and time of training from the cache against the full fine-tune, over data sets, codecs, modes, seeds.

    python tools/train_table.py --model minilm --datasets rt,bbc --codecs fp32,int8z,int4z \
        --modes upper,adapter --seeds 0,1,2 --work runs/train
    python tools/train_table.py --work runs/train --table-only        # the table from results.jsonl

For each (model, data set) it writes a corpus (RT: the first --rt-train training reviews plus the full
validation and test splits; BBC: everything), encodes it once per codec (the one-off cost, timed), then
for each seed fine-tunes the whole model from text once (the baseline) and trains every (codec, mode)
from the cache with the same seed, data, batches, epochs and head. Every run is appended to
WORK/results.jsonl as it finishes, so an interrupted grid resumes. Prints a human table, then one JSON
document as the last line.

A second test sample: `--test-decile D` re-deals the corpus's train and test documents by the hash
that makes the splits (erpack.assets.bucket_of): those in decile D are the test split, the rest train,
validation unchanged (D = 9 is the default split; 8 is validation's). The documents are the same, so
the caches are shared. The table pairs every run with the baseline of its seed and decile, pools the
deciles of one tag, and gives a 95% paired-bootstrap interval of the mean difference over the test
documents (runs record which test documents they got right).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

DATASETS = {"rt": "rotten_tomatoes", "bbc": "bbc"}
# Which documents a subset takes: RT's order is mixed already (55% fresh in the first 1000 training
# reviews, 58% overall); BBC's is by class, so its subsets take documents in sha256(id) order.
ORDER = {"rt": "file", "bbc": "hash"}
# Result rows that belong to no training configuration: kept whatever --tags says, never merged.
UNTAGGED = ("encode", "timing")


def mode_spec(cell: str):
    """(erpack mode, AdapterSpec or None) of a --modes entry: `upper`, `head`, `adapter` (LoRA r=16, alpha
    32, the default), `adapter-rN` (LoRA of rank N, alpha 2N), `adapter-rNaM` (rank N, alpha M),
    `adapter-ia3`; a LoRA entry followed by `-dora` is DoRA (`adapter-dora`, `adapter-r8-dora`); an adapter
    entry ending in `-ln` also trains the upper layers' LayerNorms. The entry names the table's cell."""
    import re

    from erpack.errors import InputError
    from erpack.train import AdapterSpec

    if cell in ("upper", "head"):
        return cell, None
    m = re.fullmatch(r"adapter(?:-(ia3)|-r(\d+)(?:a(\d+))?)?(-dora)?(-ln)?", cell)
    if not m:
        raise InputError(f"unknown mode {cell!r}; modes: upper, head, adapter, adapter-rN (LoRA rank N, alpha 2N), "
                         "adapter-rNaM (rank N, alpha M), adapter-ia3, a LoRA entry with -dora (DoRA), and any "
                         "adapter with -ln (LayerNorms train)")
    norms, dora = bool(m[5]), bool(m[4])
    if m[1]:
        return "adapter", AdapterSpec("ia3", norms=norms, dora=dora)  # ia3 + dora: the spec refuses it
    if m[2]:
        return "adapter", AdapterSpec(r=int(m[2]), alpha=int(m[3]) if m[3] else None, norms=norms, dora=dora)
    return "adapter", AdapterSpec(norms=norms, dora=dora)


def write_corpus(path: Path, dataset: str, sizes: dict[str, int], order: str = "file") -> Path:
    """The first sizes[split] documents of each split as a JSONL corpus, in the data set's stable order
    (order="file") or in sha256(id) order (order="hash", for data sets stored class by class)."""
    import hashlib

    from erpack.assets import load_dataset
    from erpack.store.atomic import write_atomic

    if path.exists():
        return path
    records = load_dataset(dataset)
    if order == "hash":
        records = sorted(records, key=lambda r: hashlib.sha256(r.id.encode()).hexdigest())
    rows, taken = [], dict.fromkeys(sizes, 0)
    for r in records:
        if taken[r.split] >= sizes[r.split]:
            continue
        taken[r.split] += 1
        rows.append({"id": r.id, "text": r.text, "label": r.label, "split": r.split})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, "".join(json.dumps(x) + "\n" for x in rows).encode())
    return path


def fold_corpus(base: Path, decile: int) -> Path:
    """`base` with its train and test documents re-dealt: hash decile `decile` is test, the rest train."""
    from erpack.assets import bucket_of
    from erpack.store.atomic import write_atomic

    if not 0 <= decile <= 9 or decile == 8:
        raise SystemExit(f"--test-decile takes 0-7 or 9 (decile 8 is the validation split), got {decile}")
    path = base.with_name(f"{base.stem}-d{decile}.jsonl")
    if path.exists():
        return path
    rows = [json.loads(line) for line in base.read_text().splitlines() if line.strip()]
    for r in rows:
        if r["split"] != "validation":
            r["split"] = "test" if int(bucket_of(r["id"]) * 10) == decile else "train"
    write_atomic(path, "".join(json.dumps(x) + "\n" for x in rows).encode())
    return path


def decile_of(row: dict) -> int:
    """The test decile of a result row (rows from before --test-decile ran on the default split, 9)."""
    d = row.get("test_decile")
    return 9 if d is None else d


def correct_string(result, data) -> str:
    """'1'/'0' per test document, in the split's order: what a paired bootstrap needs."""
    if result.test_logits is None:
        return ""
    return "".join("1" if p == y else "0" for p, y in zip(result.test_logits.argmax(axis=1), data.y["test"]))


def paired_bootstrap(pairs: list[tuple[int, str, str]], iterations: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% interval, in points, of the mean over `pairs` of (recycled - baseline) test accuracy, resampling
    the test documents of each decile (pairs on one decile share its resample): (decile, recycled '1'/'0'
    string, baseline '1'/'0' string) each."""
    rng = np.random.default_rng(seed)
    by_decile: dict = {}
    for decile, r, b in pairs:
        if len(r) != len(b):
            raise ValueError(f"decile {decile}: {len(r)} recycled against {len(b)} baseline test documents")
        diff = np.frombuffer(r.encode(), np.uint8).astype(np.int8) - np.frombuffer(b.encode(), np.uint8).astype(np.int8)
        by_decile.setdefault(decile, []).append(diff)
    total = np.zeros(iterations)
    for diffs in by_decile.values():
        idx = rng.integers(0, len(diffs[0]), size=(iterations, len(diffs[0])))
        for d in diffs:
            total += d[idx].mean(axis=1)
    lo, hi = np.percentile(100 * total / len(pairs), [2.5, 97.5])
    return float(lo), float(hi)


def finished(path: Path) -> set[tuple]:
    """Keys of the runs in results file `path`, read afresh: another process may have added some."""
    return {(r["kind"], r["model"], r["dataset"], r.get("codec"), r.get("mode"), r.get("seed"), r.get("tag", ""),
             decile_of(r)) for r in load_results(path)}


def ensure_cache(work: Path, corpus: Path, model: str, ds: str, codec: str, layer: int, max_length: int) -> Path:
    """The work folder's cache of (model, data set, codec), encoded from `corpus` (timed, recorded) unless a
    results row says it exists. Under a lock file, so grids that share a work folder encode it once."""
    import fcntl

    from erpack.encode import encode_corpus

    cache = work / f"cache-{model}-k{layer}-{ds}-{codec.replace(':', '').replace('+', '_')}"
    results_path = work / "results.jsonl"
    with open(cache.with_name(cache.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if any(r["kind"] == "encode" and (r["model"], r["dataset"], r["codec"]) == (model, ds, codec)
               for r in load_results(results_path)):
            return cache
        t = time.perf_counter()
        s = encode_corpus(str(corpus), str(cache), model=model, layer=layer, codec=codec, max_length=max_length)
        row = {"kind": "encode", "model": model, "dataset": ds, "codec": codec, "mode": None, "seed": None,
               "layer": layer, "seconds": time.perf_counter() - t, "documents": s.cache_documents,
               "tokens": s.cache_tokens, "bytes": s.cache_bytes}
        append(results_path, row)
    print(f"encoded {model} {ds} {codec}: {row['seconds']:.1f} s, {row['bytes'] / 1e6:.1f} MB", flush=True)
    return cache


def load_results(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def run_grid(args) -> None:
    import torch
    import transformers

    from erpack.models import load_model
    from erpack.store import CacheReader
    from erpack.train import TrainConfig
    from erpack.train.baseline import run_baseline
    from erpack.train.trainer import prepare_data, run_recycled

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results_path = work / "results.jsonl"
    decile = 9 if args.test_decile is None else args.test_decile
    tag = args.tag
    for model in args.model.split(","):
        num_layers = load_model(model).num_layers
        layer = num_layers // 2
        for ds in args.datasets.split(","):
            name = DATASETS[ds]
            max_length = args.bbc_max_length if ds == "bbc" else args.rt_max_length
            sizes = args.bbc_sizes if ds == "bbc" else args.rt_sizes
            batch_size = args.bbc_batch_size if ds == "bbc" else args.batch_size
            corpus = write_corpus(work / f"{ds}-{ORDER[ds]}-{sizes.replace(',', '-')}.jsonl", name,
                                  dict(zip(("train", "validation", "test"), map(int, sizes.split(",")))), ORDER[ds])
            labels = str(corpus if args.test_decile is None else fold_corpus(corpus, args.test_decile))
            caches = {codec: ensure_cache(work, corpus, model, ds, codec, layer, max_length)
                      for codec in args.codecs.split(",")}
            for seed in [int(x) for x in args.seeds.split(",")]:
                cfg = TrainConfig(epochs=args.epochs, batch_size=batch_size, seed=seed, patience=args.patience,
                                  lr=None, baseline_lr=args.full_lr)
                first = CacheReader(caches[args.codecs.split(",")[0]])
                data = prepare_data(first, labels, "classification")
                baseline_key = ("baseline", model, ds, None, "full", seed, tag, decile)
                if not args.no_baseline and baseline_key not in finished(results_path):
                    r = run_baseline(first.meta, data, cfg)
                    append(results_path, {"kind": "baseline", "model": model, "dataset": ds, "codec": None,
                                          "mode": "full", "seed": seed, "layer": layer, "tag": tag,
                                          "test_decile": args.test_decile, "test_correct": correct_string(r, data),
                                          "result": r.as_dict()})
                    print(f"baseline {model} {ds} seed {seed}: test {r.test['accuracy']:.4f}, "
                          f"{r.train_seconds_per_epoch:.1f} s/epoch", flush=True)
                first.close()
                for codec, cache in caches.items():
                    with CacheReader(cache) as reader:
                        data = prepare_data(reader, labels, "classification")
                        for mode in [m for m in args.modes.split(",") if m]:
                            if ("recycled", model, ds, codec, mode, seed, tag, decile) in finished(results_path):
                                continue
                            kind, spec = mode_spec(mode)
                            mcfg = TrainConfig(**{**vars(cfg), "lr": args.upper_lr if kind == "upper" else args.adapter_lr})
                            _, r = run_recycled(reader, data, kind, spec, mcfg)
                            append(results_path, {"kind": "recycled", "model": model, "dataset": ds, "codec": codec,
                                                  "mode": mode, "seed": seed, "layer": layer, "tag": tag,
                                                  "test_decile": args.test_decile,
                                                  "test_correct": correct_string(r, data), "result": r.as_dict()})
                            print(f"{mode} {model} {ds} {codec} seed {seed}: test {r.test['accuracy']:.4f}, "
                                  f"{r.train_seconds_per_epoch:.1f} s/epoch, waited "
                                  f"{sum(e['wait_seconds'] for e in r.epochs):.1f} s", flush=True)


def run_timing(args) -> None:
    """Epoch times only, interleaved (full, then each mode from each cache, for --rounds rounds) on the first
    --timing training documents, so slow spells of a shared machine hit every contender alike."""
    import torch
    import transformers

    from erpack.models import load_model
    from erpack.store import CacheReader
    from erpack.train import TrainConfig
    from erpack.train.baseline import run_baseline
    from erpack.train.trainer import prepare_data, run_recycled

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results_path = work / "results.jsonl"
    for model in args.model.split(","):
        layer = load_model(model).num_layers // 2
        for ds in args.datasets.split(","):
            sizes = args.bbc_sizes if ds == "bbc" else args.rt_sizes
            corpus = write_corpus(work / f"{ds}-{ORDER[ds]}-{sizes.replace(',', '-')}.jsonl", DATASETS[ds],
                                  dict(zip(("train", "validation", "test"), map(int, sizes.split(",")))), ORDER[ds])
            max_length = args.bbc_max_length if ds == "bbc" else args.rt_max_length
            batch_size = args.bbc_batch_size if ds == "bbc" else args.batch_size
            readers = {codec: CacheReader(ensure_cache(work, corpus, model, ds, codec, layer, max_length))
                       for codec in args.codecs.split(",")}
            first = next(iter(readers.values()))
            cfg = TrainConfig(epochs=1, batch_size=batch_size, seed=0, train_limit=args.timing)
            data = prepare_data(first, str(corpus), "classification", train_limit=args.timing, splits=("train",))
            for rnd in range(args.rounds):
                r = run_baseline(first.meta, data, cfg)
                times = {"full": r.train_seconds_per_epoch}
                for codec, reader in readers.items():
                    for mode in args.modes.split(","):
                        _, rr = run_recycled(reader, data, *mode_spec(mode), cfg)
                        times[f"{mode} {codec}"] = rr.train_seconds_per_epoch
                        times[f"{mode} {codec} wait"] = sum(e["wait_seconds"] for e in rr.epochs)
                append(results_path, {"kind": "timing", "model": model, "dataset": ds, "codec": None, "mode": None,
                                      "seed": rnd, "layer": layer, "documents": len(data.splits["train"]),
                                      "tokens": int(sum(data.lengths["train"])), "threads": args.threads,
                                      "seconds": times})
                print(f"timing {model} {ds} round {rnd}: " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()),
                      flush=True)
            for reader in readers.values():
                reader.close()


def timing_table(rows: list[dict]) -> list[dict]:
    out = []
    groups: dict = {}
    for r in rows:
        if r["kind"] == "timing":
            groups.setdefault((r["model"], r["dataset"], r["layer"], r["documents"], r["tokens"]), []).append(r["seconds"])
    if groups:
        print()
        print("epoch time, interleaved rounds (median s; ratio to the full fine-tune; time the model waited on the cache)")
    for (model, ds, layer, docs, tokens), rounds in sorted(groups.items()):
        full = float(np.median([x["full"] for x in rounds]))
        print(f"{model} {ds} k={layer}: {docs} docs, {tokens} tokens, {len(rounds)} round(s): full {full:.1f} s")
        for key in rounds[0]:
            if key == "full" or key.endswith(" wait"):
                continue
            t = float(np.median([x[key] for x in rounds]))
            w = float(np.median([x.get(key + " wait", 0.0) for x in rounds]))
            print(f"    {key:<22} {t:7.1f} s  ratio {t / full:.3f}  waited {w:.2f} s")
            out.append({"model": model, "dataset": ds, "layer": layer, "documents": docs, "tokens": tokens,
                        "what": key, "seconds": t, "full_seconds": full, "ratio": t / full, "wait_seconds": w,
                        "rounds": len(rounds)})
    return out


def _ms(row: dict, key: str) -> str:
    """`key`_mean ± `key`_sd of a table row, in percent ("-" when absent)."""
    if row[f"{key}_mean"] is None:
        return "-"
    return f"{100 * row[f'{key}_mean']:.2f} ± {100 * row[f'{key}_sd']:.2f}"


def merge_tags(rows: list[dict], tags: list[str], by: str = "validation") -> list[dict]:
    """One configuration out of several: for each (model, data set, codec, mode, seed), and for each
    (model, data set, seed) baseline, the run of `tags` with the best validation accuracy (the first
    tag listed wins a tie). The test split plays no part in the choice. by="order": the first tag
    listed that has the run (an overlay: one configuration's runs in place of another's). The rows
    come back tagged "TAG1+TAG2+...", each with the tag it was taken from in "selected"."""
    name = "+".join(tags)
    best: dict = {}
    for r in rows:
        if r["kind"] in UNTAGGED or r.get("tag", "") not in tags:
            continue
        key = (r["kind"], r["model"], r["dataset"], r.get("codec"), r.get("mode"), r.get("seed"), decile_of(r))
        validation = r["result"]["best_validation"].get("accuracy", float("-inf")) if by == "validation" else 0.0
        score = (validation, -tags.index(r.get("tag", "")))
        if key not in best or score > best[key][0]:
            best[key] = (score, r)
    chosen = [{**r, "tag": name, "selected": r.get("tag", "")} for _, r in best.values()]
    return [r for r in rows if r["kind"] in UNTAGGED] + chosen


def table(work: Path, tags: list[str] | None = None, markdown: bool = False, merge: str | None = None) -> dict:
    """Rows of (tag, model, data set, codec, mode): test accuracy over seeds against the baseline of the
    same tag and seeds, the paired difference in points (mean, min, max), epoch times, encoding cost.
    Printed as a text table, or as a Markdown table with the criterion (mean Δ >= -1 point) when
    `markdown`; `tags` keeps only those configurations; `merge` ("validation" or "order") makes them
    one (`merge_tags`)."""
    rows = load_results(work / "results.jsonl")
    if tags is not None:
        rows = [r for r in rows if r["kind"] in UNTAGGED or r.get("tag", "") in tags]
    if merge:
        rows = merge_tags(rows, tags or sorted({r.get("tag", "") for r in rows if r["kind"] not in UNTAGGED}),
                          by=merge)
    base = {}
    for r in rows:
        if r["kind"] == "baseline":
            base.setdefault((r["model"], r["dataset"], r.get("tag", "")), {})[(r["seed"], decile_of(r))] = r
    enc = {(r["model"], r["dataset"], r["codec"]): r for r in rows if r["kind"] == "encode"}
    groups: dict = {}
    for r in rows:
        if r["kind"] == "recycled":
            groups.setdefault((r.get("tag", ""), r["model"], r["dataset"], r["codec"], r["mode"], r["layer"]), []).append(r)
    out = []
    for (tag, model, ds, codec, mode, layer), rs in sorted(groups.items()):
        brows = base.get((model, ds, tag), {})
        b = {key: x["result"] for key, x in brows.items()}
        keys = sorted((r["seed"], decile_of(r)) for r in rs)
        acc = [r["result"]["test"]["accuracy"] for r in rs]
        bacc = [b[key]["test"]["accuracy"] for key in keys if key in b]
        t = float(np.mean([r["result"]["train_seconds_per_epoch"] for r in rs]))
        bt = float(np.mean([b[key]["train_seconds_per_epoch"] for key in keys if key in b])) if bacc else float("nan")
        matched = [(r, brows[(r["seed"], decile_of(r))]) for r in rs if (r["seed"], decile_of(r)) in b]
        paired = [r["result"]["test"]["accuracy"] - x["result"]["test"]["accuracy"] for r, x in matched]
        by_decile: dict = {}
        for (r, _), d in zip(matched, paired):
            by_decile.setdefault(decile_of(r), []).append(100 * d)
        ci = (paired_bootstrap([(decile_of(r), r["test_correct"], x["test_correct"]) for r, x in matched])
              if matched and all(r.get("test_correct") and x.get("test_correct") for r, x in matched) else None)
        e = enc.get((model, ds, codec), {})
        saving = bt - t
        breakeven = e.get("seconds", float("nan")) / saving if saving > 0 else float("inf")
        out.append({"tag": tag, "lr": sorted({r["result"]["lr"] for r in rs}), "baseline_lr": sorted({x["lr"] for x in b.values()}),
                    "model": model, "dataset": ds, "layer": layer, "codec": codec, "mode": mode,
                    "seeds": [s for s, _ in keys], "test_deciles": sorted({d for _, d in keys}),
                    "test_accuracy_mean": float(np.mean(acc)), "test_accuracy_sd": float(np.std(acc)),
                    "baseline_accuracy_mean": float(np.mean(bacc)) if bacc else None,
                    "baseline_accuracy_sd": float(np.std(bacc)) if bacc else None,
                    "delta_points_mean": 100 * float(np.mean(paired)) if paired else None,
                    "delta_points_min": 100 * float(np.min(paired)) if paired else None,
                    "delta_points_max": 100 * float(np.max(paired)) if paired else None,
                    "delta_points_ci95": list(ci) if ci else None,
                    # mean Δ of each test decile, and their mean (each decile one sample, whatever its seeds)
                    "delta_points_by_decile": {d: float(np.mean(v)) for d, v in sorted(by_decile.items())},
                    "delta_points_decile_mean": float(np.mean([np.mean(v) for v in by_decile.values()]))
                    if by_decile else None,
                    "within_1_point": bool(100 * np.mean(paired) >= -1.0) if paired else None,
                    "seconds_per_epoch": t, "baseline_seconds_per_epoch": bt,
                    "epoch_time_ratio": t / bt if bacc else None,
                    "encode_seconds": e.get("seconds"), "cache_bytes": e.get("bytes"),
                    "break_even_epochs": breakeven})
    (_print_markdown if markdown else _print_text)(out)
    _print_deciles(out)
    timing = timing_table(rows)
    return {"rows": out, "timing": timing, "machine": {"platform": platform.platform(), "processor": platform.processor(),
                                     "cpus": os.cpu_count(), "python": sys.version.split()[0]}}


def _delta(row: dict) -> str:
    if row["delta_points_mean"] is None:
        return "-"
    text = f"{row['delta_points_mean']:+.2f} ({row['delta_points_min']:+.2f}..{row['delta_points_max']:+.2f})"
    if row["delta_points_ci95"]:
        text += " [{:+.2f}, {:+.2f}]".format(*row["delta_points_ci95"])
    return text


def _print_text(out: list[dict]) -> None:
    w = max([len(r["tag"]) for r in out] + [3]) + 2
    header = (f"{'tag':<{w}}{'model':<7}{'data':<5}{'k':>3} {'codec':<17}{'mode':<8}{'runs':>5}  {'test acc (mean ± sd)':>21}  "
              f"{'baseline':>15}  {'Δ pts (min..max)':>22}  {'s/epoch':>7}  {'base s/ep':>9}  {'ratio':>5}  "
              f"{'encode s':>8}  {'break-even ep':>13}")
    print(header)
    print("-" * len(header))
    for r in out:
        ratio = f"{r['epoch_time_ratio']:.2f}" if r["epoch_time_ratio"] else "-"
        print(f"{r['tag']:<{w}}{r['model']:<7}{r['dataset']:<5}{r['layer']:>3} {r['codec']:<17}{r['mode']:<8}"
              f"{len(r['seeds']):>5}  {_ms(r, 'test_accuracy'):>21}  {_ms(r, 'baseline_accuracy'):>15}  {_delta(r):>22}  "
              f"{r['seconds_per_epoch']:>7.1f}  {r['baseline_seconds_per_epoch']:>9.1f}  {ratio:>5}  "
              f"{r['encode_seconds'] or float('nan'):>8.1f}  {r['break_even_epochs']:>13.1f}")


def _print_deciles(out: list[dict]) -> None:
    """Δ by test decile, for the rows that span more than one."""
    spanning = [r for r in out if len(r["delta_points_by_decile"]) > 1]
    if spanning:
        print()
        print("Δ points by test decile (mean over its seeds); mean over deciles")
    for r in spanning:
        parts = " · ".join(f"{d}: {v:+.2f}" for d, v in r["delta_points_by_decile"].items())
        print(f"{r['tag']} {r['model']} {r['dataset']} {r['codec']} {r['mode']}: {parts}; "
              f"mean over deciles {r['delta_points_decile_mean']:+.2f}")


def _lrs(values: list[float]) -> str:
    return "/".join(f"{v:g}" for v in values) or "-"


def _print_markdown(out: list[dict]) -> None:
    print("| tag | model, k | data | codec | mode | lr (full) | runs | test acc (mean ± sd) | baseline | "
          "Δ points (min..max) | within 1 point |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in out:
        ok = {True: "yes", False: "**no**", None: "-"}[r["within_1_point"]]
        print(f"| {r['tag']} | {r['model']}, {r['layer']} | {r['dataset']} | {r['codec']} | {r['mode']} | "
              f"{_lrs(r['lr'])} ({_lrs(r['baseline_lr'])}) | {len(r['seeds'])} | {_ms(r, 'test_accuracy')} | "
              f"{_ms(r, 'baseline_accuracy')} | {_delta(r)} | {ok} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="minilm", help="comma-separated built-in models (split at L // 2)")
    p.add_argument("--datasets", default="rt,bbc")
    p.add_argument("--codecs", default="fp32,int8z,int4z")
    p.add_argument("--modes", default="upper,adapter",
                   help="recycled modes: upper, head, adapter (LoRA r=16), adapter-rN[aM] (LoRA rank N, alpha M or "
                        "2N), adapter-ia3, a LoRA cell + -dora (DoRA), and any adapter + -ln (its LayerNorms train); "
                        "\"\" runs the baselines only")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--upper-lr", type=float, default=1e-4)
    p.add_argument("--adapter-lr", type=float, default=1e-3)
    p.add_argument("--full-lr", type=float, default=1e-4)
    p.add_argument("--bbc-batch-size", type=int, default=16)
    p.add_argument("--rt-sizes", default="1000,200,600", help="train,validation,test documents of Rotten Tomatoes")
    p.add_argument("--bbc-sizes", default="200,60,239", help="train,validation,test documents of BBC")
    p.add_argument("--rt-max-length", type=int, default=128)
    p.add_argument("--bbc-max-length", type=int, default=128)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: steady timings on a shared 2-core machine)")
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--work", default="runs/train")
    p.add_argument("--table-only", action="store_true")
    p.add_argument("--tags", default=None, help="comma-separated tags: the table shows only these configurations")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown with the 1-point verdict")
    merging = p.add_mutually_exclusive_group()
    merging.add_argument("--select", dest="merge", action="store_const", const="validation",
                   help="merge --tags into one configuration: per cell and seed, the run with the best validation accuracy")
    merging.add_argument("--overlay", dest="merge", action="store_const", const="order",
                   help="merge --tags into one configuration: per cell and seed, the run of the first tag listed that has it")
    p.add_argument("--tag", default="", help="label of this configuration (e.g. the learning rates) in results and table")
    p.add_argument("--test-decile", type=int, default=None,
                   help="a second test sample: hash decile D (0-7; 9 is the default split) of the train and test "
                        "documents is the test split, the rest train")
    p.add_argument("--timing", type=int, default=None, help="measure epoch times only, on the first N training docs")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds of --timing (default: 2)")
    args = p.parse_args(argv)
    from erpack.errors import InputError

    try:  # an unknown mode fails before anything is written, encoded or trained
        for cell in [m for m in args.modes.split(",") if m]:
            mode_spec(cell)
    except InputError as e:
        p.error(str(e))
    if args.timing:
        run_timing(args)
    elif not args.table_only:
        run_grid(args)
    tags = None if args.tags is None else args.tags.split(",")
    print(json.dumps(table(Path(args.work), tags, args.markdown, args.merge)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
