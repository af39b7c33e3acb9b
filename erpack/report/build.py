"""`erpack report` as a library call: measured caches and codecs -> the storage-cost `Report`.

    rep = build_report(ReportConfig(caches=["caches/bbc-int8z"], codecs=["int4c:19+zstd:3"],
                                    documents=100_000_000, profile="bbc"))
    write_report(rep, "report.html")   # and report.md, report.json beside it

Every number in the report comes from an input it lists: the caches (sizes from their indexes, codec
speed from a sample of their records), re-encoded samples (erpack.compress), the bench JSON files
(speedup, accuracy), and two timed samples taken here (the lower stack, and reading + decoding).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from erpack.errors import InputError
from erpack.report import measure, project
from erpack.store.location import is_url, open_location


@dataclass
class ReportConfig:
    caches: list[str]
    codecs: list[str] = field(default_factory=list)  # re-encode a sample of the first cache with each
    bench: list[str] = field(default_factory=list)  # erpack bench JSON files
    documents: float | None = 100_000_000
    tokens: float | None = None
    profile: str | None = None  # bbc, rotten_tomatoes, or a cache folder; default: the first cache
    price_per_gib_month: float = 0.023  # $ per GiB-month (2^30 bytes)
    price_per_hour: float = 0.10  # of the machine that encodes and runs the models
    months: float = 1.0
    sample: int = 200
    time_lower: bool = True
    command: str | None = None
    storage_options: dict | None = None  # fsspec options for caches given as URLs

    def __post_init__(self):
        if not self.caches:
            raise InputError("erpack report needs at least one cache folder")
        if self.documents is not None and self.tokens is not None:
            raise InputError("give --documents or --tokens, not both")
        for name in ("price_per_gib_month", "price_per_hour", "months"):
            if getattr(self, name) < 0:
                raise InputError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")


def read_bench(path) -> dict:
    try:
        lines = [x for x in open(path, encoding="utf-8").read().splitlines() if x.strip()]
        data = json.loads(lines[-1])
    except (OSError, IndexError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not an erpack bench JSON (its last line must be the JSON result): {exc}") from None
    if data.get("kind") != "erpack-bench":
        raise InputError(f"{path}: kind {data.get('kind')!r} is not erpack-bench; write it with `erpack bench -o`")
    data["file"] = str(path)
    return data


def bench_points(benches: list[dict]) -> list[dict]:
    """One point per bench path: speedup, bytes per token, bound, accuracy (what the plots show)."""
    out = []
    for b in benches:
        w = b["workload"]
        for p in b["paths"]:
            out.append({"bench": b["file"], "model": w["model"], "layer": w["layer"], "path": p["path"],
                        "codec": p.get("codec"), "bytes_per_token": p.get("bytes_per_token"),
                        "bits_per_value": p.get("bits_per_value"), "speedup": p.get("speedup_vs_full_torch"),
                        "bound": w["compute_bound"], "documents_per_second": p["documents_per_second"],
                        "accuracy": p.get("accuracy"), "agreement": p.get("agreement_with_full_torch"),
                        "breakdown": p.get("breakdown"), "median_seconds": p["seconds"]["median"],
                        "spread": p["seconds"]["spread"], "trained_head": w["trained_head"]})
    return out


def reencode_reference(rows: list[dict]) -> dict:
    """The cache row whose records the --codec samples re-encode: the first lossless cache (it holds
    the activations themselves), else the first cache."""
    return next((r for r in rows if r["kind"] == "cache" and r["lossless"]), rows[0])


def lossy_reference_note(reference: dict) -> str:
    return (f"the re-encoded samples were made from {reference['source']} ({reference['codec']}), a lossy cache: "
            "their sizes and SQNR are those of re-encoding values it had already quantized, not the activations "
            "(fewer distinct values compress better and lose less, so both look better than they are); give a "
            "lossless cache (e.g. `erpack encode --codec fp32+zstd:3`) among the caches to project from it")


def same_model(bench_model, row: dict) -> bool:
    """Is the model a bench ran (as its user named it) the one a cache row was made with (its recorded
    name, or the folder it was loaded from)?"""
    named = str(bench_model)
    if named in (row["model"], row.get("model_location")):
        return True
    folder = Path(named).expanduser()
    return folder.is_dir() and str(folder.resolve()) == row.get("model_location")


FORMULAS = {
    "size": "bytes = N * (a + b * m): a, b fitted per codec on measured records "
            "(bytes(doc) = a + b * tokens(doc)), m = mean tokens per document of the profile",
    "monthly_cost": "bytes / 2^30 (GiB) * price per GiB-month",
    "break_even": "n* = (E * p + S * M) / ((C - R) * p): E = T * (t_lower + t_encode) encode "
                  "seconds once, S storage $/month, M months kept, C = T * t_lower recompute "
                  "seconds per run, R = T * t_read read + decode seconds per run, p $ per "
                  "compute second, T corpus tokens",
}


@dataclass
class Report:
    """The storage-cost report: one row per measured cache or re-encoded codec (`rows`: sizes, fit,
    speed, projection, break-even, matching bench points), the length `profile`, the `lower` stack
    timings, the bench points, and every input it stands on. as_dict() is report.json and
    `erpack report --json`."""

    config: ReportConfig
    inputs: dict
    profile: dict  # the length profile's figures (its per-document lengths left out)
    lower: list[dict]
    rows: list[dict]
    bench: list[dict]
    bench_machines: list
    notes: list[str]
    seconds: float
    formulas: dict = field(default_factory=lambda: dict(FORMULAS))

    @property
    def command(self) -> str | None:
        return self.config.command

    def as_dict(self) -> dict:
        config = asdict(self.config)
        if config["storage_options"] is not None:  # keys may hold credentials: the report names the options only
            config["storage_options"] = sorted(config["storage_options"])
        return {"kind": "erpack-report", "version": 1, "command": self.command, "config": config,
                "inputs": self.inputs, "profile": self.profile, "lower": self.lower, "rows": self.rows,
                "bench": self.bench, "bench_machines": self.bench_machines, "notes": self.notes,
                "formulas": self.formulas, "seconds": self.seconds}


def _cache(cfg: ReportConfig, source):
    """A cache named by a URL as a Location with the report's storage options; a path unchanged."""
    return open_location(source, cfg.storage_options) if is_url(source) else source


def measure_caches(cfg: ReportConfig, log) -> list[dict]:
    """One row per cache; a lossy cache of the lossless one's model and layer gets its SQNR against it."""
    rows = []
    for c in cfg.caches:
        log(f"measuring cache {c}")
        rows.append(measure.cache_row(_cache(cfg, c), cfg.sample))
    lossless = next((r for r in rows if r["lossless"]), None)
    for r in rows:
        if lossless and r is not lossless and r["model"] == lossless["model"] and r["layer"] == lossless["layer"]:
            r["sqnr_db"] = measure.sqnr_against(_cache(cfg, lossless["source"]), _cache(cfg, r["source"]),
                                               cfg.sample)
            r["sqnr_reference"] = lossless["codec"]
    return rows


def reencode_codecs(cfg: ReportConfig, rows: list[dict], notes: list[str], log) -> dict | None:
    """Append a row per --codec, re-encoded from the reference cache (returned; None without codecs),
    noting when that reference is lossy."""
    reference = reencode_reference(rows) if cfg.codecs else None
    if reference is not None and not reference["lossless"]:
        notes.append(lossy_reference_note(reference))
    for spec in cfg.codecs:
        log(f"re-encoding a sample of {reference['source']} with {spec}")
        row = measure.codec_row(_cache(cfg, reference["source"]), spec, cfg.sample)
        row.update(reference=reference["source"], reference_lossless=reference["lossless"])
        rows.append(row)
    return reference


def time_lowers(cfg: ReportConfig, rows: list[dict], lengths, notes: list[str], log) -> dict[tuple, dict]:
    """(model, layer) -> timing of layers 0..k-1 on the profile's lengths; a model that cannot be
    loaded here is noted (the report still has its sizes)."""
    lowers: dict[tuple, dict] = {}
    if not cfg.time_lower:
        return lowers
    for key in dict.fromkeys((r["model"], r["layer"]) for r in rows):
        log(f"timing layers 0..{key[1] - 1} of {key[0]}")
        try:
            where = next(r["model_location"] for r in rows if (r["model"], r["layer"]) == key)
            lowers[key] = measure.lower_seconds_per_token(where, key[1], lengths)
        except Exception as exc:  # a model that cannot be loaded here: the report still has sizes
            notes.append(f"break-even not computed for {key[0]} k={key[1]}: the lower stack could not be "
                         f"timed ({exc})")
    return lowers


def project_row(r: dict, cfg: ReportConfig, docs: float, tokens: float, mean_tokens: float, lower: dict | None) -> None:
    """Fill a row's per-token seconds, its projected size and monthly cost, and its break-even."""
    r["read_seconds_per_token"] = (measure.read_seconds_per_token(_cache(cfg, r["source"]), cfg.sample)
                                   if r["kind"] == "cache" else None)
    r["decode_seconds_per_token"] = 4 * r["hidden"] / 1e6 / r["decode_MBps"]
    r["encode_seconds_per_token"] = 4 * r["hidden"] / 1e6 / r["encode_MBps"]
    nbytes = project.projected_bytes(r["fit"]["a"], r["fit"]["b"], docs, mean_tokens)
    monthly = project.monthly_cost(nbytes, cfg.price_per_gib_month)
    r["projection"] = {"documents": docs, "tokens": tokens, "bytes": nbytes,
                       "bytes_per_document": nbytes / docs, "monthly_cost": monthly}
    r["lower_seconds_per_token"] = lower["seconds_per_token"] if lower else None
    r["break_even"] = None
    if lower:
        t_read = r["read_seconds_per_token"] or r["decode_seconds_per_token"]
        r["break_even"] = project.break_even(tokens, lower["seconds_per_token"], r["encode_seconds_per_token"],
                                             t_read, monthly, cfg.price_per_hour, cfg.months)


def build_report(cfg: ReportConfig, log=None) -> Report:
    """Measure the caches, re-encode the codecs, time the lower stacks and project each row (see Report);
    `log(message)` hears each step."""
    log = log or (lambda msg: None)
    t0 = time.perf_counter()
    benches = [read_bench(b) for b in cfg.bench]  # bad inputs fail before any measuring
    notes: list[str] = []
    rows = measure_caches(cfg, log)
    reference = reencode_codecs(cfg, rows, notes, log)
    first = rows[0]
    profile = measure.length_profile(_cache(cfg, cfg.profile or cfg.caches[0]), first["model_location"], first["max_length"])
    docs, tokens = project.corpus_tokens(cfg.documents, cfg.tokens, profile["mean"])
    lowers = time_lowers(cfg, rows, profile["lengths"], notes, log)
    points = bench_points(benches)
    for r in rows:
        project_row(r, cfg, docs, tokens, profile["mean"], lowers.get((r["model"], r["layer"])))
    for r in rows:
        r["bench"] = [p for p in points if p["codec"] == r["codec"]
                      and same_model(p["model"], r) and p["layer"] == r["layer"]]
    profile_out = {k: v for k, v in profile.items() if k != "lengths"}
    inputs = {"caches": list(cfg.caches), "codecs_reencoded_from": reference["source"] if reference else None,
              "bench": [b["file"] for b in benches], "bench_commands": [b.get("command") for b in benches],
              "profile": profile_out["how"], "lower_timing": [v["how"] for v in lowers.values()]}
    return Report(config=cfg, inputs=inputs, profile=profile_out, lower=list(lowers.values()), rows=rows,
                  bench=points, bench_machines=[b["machine"] for b in benches], notes=notes,
                  seconds=time.perf_counter() - t0)
