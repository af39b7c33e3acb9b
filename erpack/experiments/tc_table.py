"""Trained codecs measured held out (tools/tc_table.py, docs/results/trained-codecs.md).

    fit, test = load_halves("minilm", "rotten_tomatoes", 4000, cache_dir=Path("runs/tc_table"))
    row = measure_held_out("tc:snr=19", fit, test, context=..., repeat=3)
    result = measure_all(["minilm"], SPECS, DOCS, cache_dir, repeat=3, command=...)
    result["checks"] = target_checks(result["rows"])

Sets: MiniLM at layer 3 and MPNet at layer 6 over Rotten Tomatoes reviews and BBC News articles, in the
sha256-of-id order (a fixed pseudo-random order; BBC: the same number of each label), tokenized as
`erpack encode` tokenizes (max length 512) and run through the lower stack (codec_table.load_records).
Each set is dealt into two halves by that order (even places fit, odd places are measured), so no
document is in both. A fitted codec is fitted on the fit half (seed 0) and every codec is measured on
the other half, every byte counted as a cache stores it:

  - the blob `Pipeline.encode(x, tokens)` gives (codes and record headers),
  - the record's token ids as the store writes them: 2 bytes a token when every id of the record is
    below 65536, else 4,
  - the fitted state (`len(pipe.state.to_bytes())`), amortized over the measured half; bits per value
    are given with and without it.

SQNR is over the whole measured half; batch decode speed is `erpack.compress.measure`'s (padded
length-grouped batches of 32, one thread's CPU time, the best of the passes).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from erpack.assets import load_dataset, subset
from erpack.codecs import Pipeline
from erpack.compress import measure
from erpack.errors import ErpackError
from erpack.experiments.codec_table import MODELS, load_records, machine, versions
from erpack.experiments.grid import RESULTS, load_results

# the trained codecs and their baselines; extend as presets land (tc:snr=41 is int8z's quality)
BASELINES = ["int4z", "int8z"]
TC_SPECS = ["tc:snr=19", "tc:snr=41", "tc:bits=2", "tc:bits=1.5"]
SPECS = BASELINES + TC_SPECS
DATASETS = ("rotten_tomatoes", "bbc")
# documents per set, both halves together (BBC: an equal share of each of its 5 labels)
DOCS = {("minilm", "rotten_tomatoes"): 4000, ("minilm", "bbc"): 500,
        ("mpnet", "rotten_tomatoes"): 4000, ("mpnet", "bbc"): 300}
SEED = 0
BITS_TOLERANCE = 0.05


def sample(dataset: str, docs: int):
    """The set's documents in sha256-of-id order: the first `docs`, or for BBC the first docs // labels
    of each label."""
    records = load_dataset(dataset)
    if dataset == "rotten_tomatoes":
        return subset(records, order="sha256")[:docs]
    labels = sorted({r.label for r in records})
    return subset(records, dict.fromkeys(labels, max(1, docs // len(labels))), order="sha256", by="label")


def deal(items: list) -> tuple[list, list]:
    """(fit half, measured half): even places and odd places of a list in a fixed order."""
    return items[0::2], items[1::2]


def load_halves(model: str, dataset: str, docs: int, cache_dir: Path, log=lambda text: None):
    """(fit, measured): lists of (x float32 (T, H), token ids int64 (T,)) of the set's two halves,
    activations kept under cache_dir."""
    records = sample(dataset, docs)
    stem = Path(cache_dir) / f"{model}-k{MODELS[model]}-{dataset}-sha256-"
    return deal(load_records(model, records, stem, log))


def context_for(model: str) -> dict:
    """What a fitted codec records about the activations it was fitted on (as a cache's meta gives it:
    erpack.codecs.state.context_of): the encoder's name, weights sha256 and hidden size, and the layer."""
    from erpack.models import load_model

    loaded = load_model(model)
    ident = loaded.identity()
    return {"model": {"name": ident["name"], "weights_sha256": ident["weights_sha256"],
                      "hidden_size": ident["hidden_size"]}, "layer": MODELS[model]}


def token_id_bytes(ids: np.ndarray) -> int:
    """What the store writes for a record's token ids: 2 bytes a token when every id is below 65536, else 4."""
    return (2 if len(ids) == 0 or int(np.max(ids)) < 65536 else 4) * len(ids)


def measure_held_out(spec: str, fit: list, test: list, context: dict | None = None, repeat: int = 3,
                     seed: int = SEED) -> dict:
    """One row: `spec` fitted on `fit` (when it fits anything) and measured on `test`, both lists of
    (x float32 (T, H), token ids (T,)). Bits per value count the blobs (codes and record headers), the
    token ids as the store writes them and, in `bits_per_value`, the fitted state amortized over `test`."""
    pipe = Pipeline.from_spec(spec)
    fit_seconds = None
    if pipe.fitted:
        t = time.process_time()
        pipe = pipe.fit(fit, context=context, seed=seed)
        fit_seconds = round(time.process_time() - t, 2)
    xs, ids = [x for x, _ in test], [t for _, t in test]
    m = measure(pipe, xs, repeat=repeat, tokens=ids).as_dict()
    values = sum(x.size for x in xs)
    blob_bytes = round(m["bits_per_value"] * values / 8)  # measure counts len(blob) of every record
    id_bytes = sum(token_id_bytes(t) for t in ids)
    state_bytes = len(pipe.state.to_bytes()) if pipe.state is not None else 0
    bits = lambda n: 8.0 * n / values  # noqa: E731
    return {"spec": spec, "pipeline": pipe.spec, "fitted": pipe.fitted, "seed": seed if pipe.fitted else None,
            "fit_docs": len(fit) if pipe.fitted else 0, "fit_tokens": sum(len(x) for x, _ in fit) if pipe.fitted else 0,
            "fit_cpu_seconds": fit_seconds, "docs": len(xs), "tokens": m["tokens"], "hidden": m["hidden"],
            "values": values, "blob_bytes": blob_bytes, "token_id_bytes": id_bytes, "state_bytes": state_bytes,
            "bits_codes": bits(blob_bytes), "bits_token_ids": bits(id_bytes), "bits_state": bits(state_bytes),
            "bits_without_state": bits(blob_bytes + id_bytes),
            "bits_per_value": bits(blob_bytes + id_bytes + state_bytes),
            "sqnr_db": m["sqnr_db"], "mean_token_cosine": m["mean_token_cosine"], "encode_MBps": m["encode_MBps"],
            "decode_MBps": m["decode_MBps"], "batch_decode_MBps": m["batch_decode_MBps"], "batch_size": m["batch_size"]}


def measure_set(model: str, dataset: str, docs: int, specs: list[str], cache_dir: Path, repeat: int, command: str,
                context: dict | None = None, log=lambda text: None) -> dict:
    """Every spec on one set: the result file of that set (docs/results/tc/MODEL-kK-DATASET.json).
    A spec that cannot be fitted or measured (an unknown codec, a budget that cannot be met) gets a row
    with its error instead."""
    t_start, load_start = time.time(), os.getloadavg()[0]
    fit, test = load_halves(model, dataset, docs, cache_dir, log)
    rows = []
    for spec in specs:
        log(f"measuring {spec} on {model} / {dataset}")
        try:
            rows.append(measure_held_out(spec, fit, test, context, repeat))
        except ErpackError as e:
            rows.append({"spec": spec, "error": str(e)})
            log(f"  {spec}: {e}")
    return {"command": command, "machine": machine(), "versions": versions(), "date": time.strftime("%Y-%m-%d"),
            "seconds": round(time.time() - t_start, 1), "load_average": [round(load_start, 1), round(os.getloadavg()[0], 1)],
            "set": {"model": model, "layer": MODELS[model], "dataset": dataset, "docs": len(fit) + len(test),
                    "fit_docs": len(fit), "fit_tokens": sum(len(x) for x, _ in fit), "docs_measured": len(test),
                    "tokens_measured": sum(len(x) for x, _ in test), "hidden": int(fit[0][0].shape[1]),
                    "order": "sha256 of id; even places fit, odd places measured"},
            "rows": rows}


def result_name(model: str, dataset: str) -> str:
    return f"{model}-k{MODELS[model]}-{dataset}.json"


def merge_rows(old: list[dict], new: list[dict]) -> list[dict]:
    """The rows of an earlier result of the same set with the specs measured again replaced, in order."""
    fresh = {r["spec"] for r in new}
    return [r for r in old if r["spec"] not in fresh] + new


# ---- what the issue asks (issue 20, "What must hold") -------------------------------------------------
# (name, tc spec, baseline spec, the baseline's nominal SQNR dB, max ratio of bits per value per model):
# the tc spec's bits all in (state amortized) at most ratio x the baseline's on the same measured half,
# at an SQNR no lower than min(nominal, the baseline's own there) - SQNR_TOLERANCE
RATIO_TARGETS = [("19 dB", "tc:snr=19", "int4z", 19.0, {"minilm": 2 / 3, "mpnet": 0.8}),
                 ("41 dB", "tc:snr=41", "int8z", 41.0, {"minilm": 0.9, "mpnet": 1.0})]
SQNR_TOLERANCE = 0.05  # dB: a target SQNR is met on the fit sample, measured on the other half
# (name, tc spec, budget): bits per value without the state within BITS_TOLERANCE of the budget
BUDGET_TARGETS = [("2 bits", "tc:bits=2", 2.0), ("1.5 bits", "tc:bits=1.5", 1.5)]
DECODE_MBPS = 1000.0  # batch decode of float32 output, one core


def target_checks(results: list[dict]) -> list[dict]:
    """One entry per (target, set): {"target", "set", "spec", "ok" (None: not measured), "why"}."""
    checks = []
    for res in results:
        s = res["set"]
        name = f"{s['model']}/{s['dataset']}"
        rows = {r["spec"]: r for r in res["rows"]}
        for target, spec, base, nominal, ratios in RATIO_TARGETS:
            r, b = rows.get(spec), rows.get(base)
            if not _measured(r) or not _measured(b):
                checks.append(_missing(target, name, spec, r if not _measured(r) else b))
                continue
            limit = ratios[s["model"]] * b["bits_per_value"]
            why = []
            if r["bits_per_value"] > limit:
                why.append(f"{r['bits_per_value']:.3f} bits > {limit:.3f} ({ratios[s['model']]:.2f} x {base}'s "
                           f"{b['bits_per_value']:.3f})")
            floor = min(nominal, b["sqnr_db"]) - SQNR_TOLERANCE
            if r["sqnr_db"] < floor:
                why.append(f"{r['sqnr_db']:.2f} dB < {floor:.2f} (min({nominal:g}, {base}'s {b['sqnr_db']:.2f}) - "
                           f"{SQNR_TOLERANCE})")
            checks.append({"target": target, "set": name, "spec": spec, "ok": not why, "why": why,
                           "value": r["bits_per_value"] / b["bits_per_value"], "against": base})
        for target, spec, budget in BUDGET_TARGETS:
            r = rows.get(spec)
            if not _measured(r):
                checks.append(_missing(target, name, spec, r))
                continue
            miss = abs(r["bits_without_state"] - budget)
            why = [] if miss <= BITS_TOLERANCE else [f"{r['bits_without_state']:.3f} bits without the state, "
                                                     f"{miss:.3f} from {budget}"]
            checks.append({"target": target, "set": name, "spec": spec, "ok": not why, "why": why,
                           "value": r["bits_without_state"]})
        for r in res["rows"]:
            if _measured(r) and r["fitted"]:
                ok = r["batch_decode_MBps"] >= DECODE_MBPS
                checks.append({"target": "decode", "set": name, "spec": r["spec"], "ok": ok,
                               "why": [] if ok else [f"{r['batch_decode_MBps']:.0f} MB/s"], "value": r["batch_decode_MBps"]})
    return checks


def _measured(row: dict | None) -> bool:
    return row is not None and "error" not in row


def _missing(target: str, name: str, spec: str, row: dict | None) -> dict:
    why = "not in the run" if row is None else f"{row['spec']}: {row['error']}"
    return {"target": target, "set": name, "spec": spec, "ok": None, "why": [why], "value": None}


def measure_all(models: list[str], datasets: list[str], specs: list[str], docs: dict, cache_dir: Path, repeat: int,
                command: str, log=lambda text: None) -> list[dict]:
    """measure_set over models x data sets; the fitting context (which loads the model to hash its
    weights) only where a spec fits anything."""
    out = []
    for model in models:
        context = context_for(model) if any(_fits(s) for s in specs) else None
        for dataset in datasets:
            out.append(measure_set(model, dataset, docs[(model, dataset)], specs, cache_dir, repeat, command, context, log))
    return out


def _fits(spec: str) -> bool:
    try:
        return Pipeline.from_spec(spec).fitted
    except ErpackError:
        return False  # measure_set records the error


# ---- task accuracy from trained caches against the int4z cache (tools/train_table.py --against int4z) ----
ACCURACY_AGAINST = "int4z"
# (target, the codec cells it covers as train_table names them, most points below the int4z cache)
ACCURACY_TARGETS = [("19 dB", ("tc:snr=19", "tc19"), 0.5), ("2 bits", ("tc:bits=2", "tc2"), 1.0)]


def accuracy_table(work: Path) -> list[dict]:
    """train_table's rows of WORK/results.jsonl, each cell paired with the int4z cell of its mode and seeds."""
    from erpack.experiments.training import grid_table

    return grid_table(load_results(Path(work) / RESULTS), against=ACCURACY_AGAINST)


def accuracy_checks(table: list[dict]) -> list[dict]:
    """One entry per cell a target covers: {"target", "set", "codec", "mode", "seeds", "delta", "ok", "why"}:
    the mean over seeds of (cell - int4z cell of the same seed) in points, at least -limit."""
    checks = []
    for target, codecs, limit in ACCURACY_TARGETS:
        for r in (r for r in table if r["codec"] in codecs):
            d = r["delta_points_mean"]
            ok = None if d is None else d >= -limit
            why = ([f"no {ACCURACY_AGAINST} run of the same seeds"] if d is None else
                   [] if ok else [f"{d:+.2f} points, {-limit - d:.2f} past -{limit}"])
            checks.append({"target": target, "set": f"{r['model']} k={r['layer']}/{r['dataset']}", "codec": r["codec"],
                           "mode": r["mode"], "seeds": r["seeds"], "delta": d, "limit": limit, "ok": ok, "why": why})
    return checks
