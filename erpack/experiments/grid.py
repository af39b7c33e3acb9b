"""A resumable grid: runs appended to WORK/results.jsonl as they finish, skipped when a row has them.

    rows = load_results(work / "results.jsonl")
    if run_key(row) not in finished(path): ...; append_result(path, row)
    cache, row = ensure_cache(work, corpus, "minilm", "rt", "int8z", layer=3, max_length=128)

A row is a JSON object with at least kind, model, dataset, codec, mode, seed (and tag, test_decile
where they apply). Grids that share a work folder share its results file and its caches: a cache is
encoded under a lock file, once.
"""

from __future__ import annotations

import fcntl
import json
import time
from pathlib import Path

from erpack.encode import encode_corpus

RESULTS = "results.jsonl"


def load_results(path: Path) -> list[dict]:
    """The rows of results file `path`, read afresh (another process may have added some); [] if none."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_result(path: Path, row: dict) -> None:
    """Add one row (one line: a run that finished) to results file `path`."""
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def decile_of(row: dict) -> int:
    """The test decile of a result row (rows from before --test-decile ran on the default split, 9)."""
    d = row.get("test_decile")
    return 9 if d is None else d


def run_key(row: dict) -> tuple:
    """What identifies a run: (kind, model, data set, codec, mode, seed, tag, test decile, split layer). The
    layer tells runs from the cache apart only: the full fine-tune is the same whatever the split."""
    return (row["kind"], row["model"], row["dataset"], row.get("codec"), row.get("mode"), row.get("seed"),
            row.get("tag", ""), decile_of(row), row.get("layer") if row["kind"] == "recycled" else None)


def finished(path: Path) -> set[tuple]:
    """Keys (run_key) of the runs in results file `path`."""
    return {run_key(r) for r in load_results(path)}


def cache_folder(work: Path, model: str, dataset: str, codec: str, layer: int) -> Path:
    """Where a grid keeps the cache of (model, data set, codec) in its work folder."""
    return Path(work) / f"cache-{model}-k{layer}-{dataset}-{codec.replace(':', '').replace('+', '_')}"


def ensure_cache(work: Path, corpus: Path, model: str, dataset: str, codec: str, layer: int,
                 max_length: int) -> tuple[Path, dict | None]:
    """The work folder's cache of (model, data set, codec, layer) and the "encode" row written when this call
    encoded it (timed), or None when a results row says it exists. Under a lock file per cache, so
    grids that share a work folder encode it once."""

    cache = cache_folder(work, model, dataset, codec, layer)
    results_path = Path(work) / RESULTS
    with open(cache.with_name(cache.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if any(r["kind"] == "encode" and (r["model"], r["dataset"], r["codec"], r["layer"]) ==
               (model, dataset, codec, layer) for r in load_results(results_path)):
            return cache, None
        t = time.perf_counter()
        s = encode_corpus(str(corpus), str(cache), model=model, layer=layer, codec=codec, max_length=max_length)
        row = {"kind": "encode", "model": model, "dataset": dataset, "codec": codec, "mode": None, "seed": None,
               "layer": layer, "seconds": time.perf_counter() - t, "documents": s.cache_documents,
               "tokens": s.cache_tokens, "bytes": s.cache_bytes}
        append_result(results_path, row)
    return cache, row
