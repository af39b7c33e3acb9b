"""Read throughput of a real cache from an S3 server against local disk: training and prediction passes.

The cache (a local folder; e.g. `erpack encode rotten_tomatoes -o CACHE --model minilm --layer 3
--codec int8z`, or --encode CORPUS to build it here) is uploaded to moto's S3 server on loopback (the
counting server of erpack.cluster.s3local, as tools/bench_open.py uses it) and read back, each pass by a
freshly opened CacheReader (opening counted):

  train     every live id in a shuffled order (seeded), batches of --batch-size through
            reader.get_batch, made ahead by erpack.runtime.prefetch.Prefetcher (depth 4) as
            erpack/train/data.py's cache_source does (without the torch conversion)
  predict   the order `erpack predict` reads a cache in: all ids, batches of similar length
            (erpack.batching.length_batches), get_batch through a Prefetcher
  in-order  `for doc_id, x in reader`: shard by shard, record by record (a remote shard reads ahead)

for three sources: local disk, S3 by range requests, S3 with --shard-cache (a fresh cache folder per
pass: "cold" downloads each shard once, then a "warm" pass over the filled folder).

Per pass: documents/s, MB/s of stored record bytes (what the cache holds for those documents,
framing included) and of decoded float32, requests per document, and the bytes the ranged GETs asked
for. Prints a markdown table; writes every figure to --json.

    python tools/bench_scale_read.py --cache /tmp/h5/cache --json /tmp/h5/bench_scale_read.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from erpack.batching import length_batches
from erpack.runtime.prefetch import Prefetcher
from erpack.store import CacheReader

PASSES = ("train", "predict", "in-order")
RANGE_RE = re.compile(r"bytes=(\d+)-(\d+)")
_BUCKETS = itertools.count()


def encode(corpus: str, out: Path) -> None:
    """A MiniLM layer-3 int8z cache of `corpus` (erpack encode, in a subprocess)."""
    cmd = [sys.executable, "-m", "erpack", "encode", corpus, "-o", str(out), "--model", "minilm", "--layer", "3",
           "--codec", "int8z"]
    subprocess.run(cmd, check=True)


def record_sizes(cache: Path) -> tuple[dict[str, int], int]:
    """{id: bytes its record takes in its shard}, and the hidden size (from the id index, no record read)."""
    with CacheReader(cache) as r:
        sizes = {}
        for shard in r.live_records():
            sizes.update(zip(shard.ids, shard.sizes.tolist()))
        return sizes, r.hidden_size


def one_pass(kind: str, where, seed: int, batch_size: int, **reader_kwargs) -> dict:
    """Open a reader on `where`, read every live document as `kind` says; what was read and how long."""
    t0 = time.perf_counter()
    docs = tokens = 0
    read_ids: list[str] = []
    with CacheReader(where, **reader_kwargs) as reader:
        opened = time.perf_counter() - t0
        if kind == "in-order":
            for doc_id, x in reader:
                docs += 1
                tokens += x.shape[0]
                read_ids.append(doc_id)
        else:
            ids = reader.ids()
            if kind == "train":
                order = list(range(len(ids)))
                random.Random(seed).shuffle(order)
                plan = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
            else:  # as erpack predict plans its batches
                plan = length_batches([reader.info(i)["tokens"] for i in ids], batch_size, 16384)
            source = Prefetcher(plan, lambda rows: reader.get_batch([ids[i] for i in rows]), depth=4)
            for rows, (_hidden, mask) in source:
                docs += len(rows)
                tokens += int(mask.sum())
                read_ids += [ids[i] for i in rows]
    return {"seconds": time.perf_counter() - t0, "open_seconds": opened, "documents": docs, "tokens": tokens,
            "ids": read_ids}


def _row(kind: str, source: str, got: dict, sizes: dict, hidden: int, log: list | None) -> dict:
    stored = sum(sizes[d] for d in got.pop("ids"))
    s = got["seconds"]
    row = {"pass": kind, "source": source, **{k: round(v, 3) if isinstance(v, float) else v for k, v in got.items()},
           "docs_per_s": got["documents"] / s, "stored_MB_per_s": stored / s / 1e6,
           "decoded_MB_per_s": got["tokens"] * hidden * 4 / s / 1e6, "stored_bytes": stored}
    if log is not None:
        ranged = [RANGE_RE.search(r) for _, _, r in log]
        row.update(requests=len(log), requests_per_doc=len(log) / got["documents"],
                   ranged_bytes=sum(int(m.group(2)) - int(m.group(1)) + 1 for m in ranged if m),
                   by_kind=_kinds(log))
    return row


def _kinds(log: list) -> dict:
    out: dict[str, int] = {}
    for method, path, rng in log:
        name = path.rsplit("/", 1)[-1]
        what = ("shard" if name.endswith(".ers") else "index part" if name.endswith(".eri")
                else "manifest" if name == "manifest.json" else "other")
        key = f"{method} {what}{' (range)' if rng else ''}"
        out[key] = out.get(key, 0) + 1
    return out


def measure(cache: Path, batch_size: int, seed: int, shard_cache: bool, server=None) -> dict:
    """Every pass from local disk, then from the S3 server: `server` (an erpack.cluster.s3local.S3Server whose
    endpoint the environment names), else one started here and stopped after."""
    from tools.bench_open import _s3_server, upload

    sizes, hidden = record_sizes(cache)
    rows = []
    for kind in PASSES:
        rows.append(_row(kind, "local", one_pass(kind, cache, seed, batch_size), sizes, hidden, None))
    own = server is None
    server = server or _s3_server()
    try:
        import boto3

        bucket = f"bench-scale-read-{next(_BUCKETS)}"  # moto's backend outlives a server in this process
        boto3.client("s3", endpoint_url=server.endpoint).create_bucket(Bucket=bucket)
        url = f"s3://{bucket}/cache"
        upload(cache, url)  # real PUTs through the server
        for kind in PASSES:
            before = server.requests()
            got = one_pass(kind, url, seed, batch_size)
            rows.append(_row(kind, "s3", got, sizes, hidden, server.log[before:]))
            if not shard_cache:
                continue
            with tempfile.TemporaryDirectory(prefix="bench-shard-cache-") as folder:
                for temp in ("cold", "warm"):
                    before = server.requests()
                    got = one_pass(kind, url, seed, batch_size, shard_cache=folder)
                    rows.append(_row(kind, f"s3 --shard-cache ({temp})", got, sizes, hidden, server.log[before:]))
    finally:
        if own:
            server.server.stop()
    return {"rows": rows}


def table(rows: list[dict]) -> list[str]:
    out = ["| pass | source | docs/s | stored MB/s | decoded MB/s | requests/doc | requests | open s | total s |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        req = (f"{r['requests_per_doc']:.3f} | {r['requests']}" if "requests" in r else "- | -")
        out.append(f"| {r['pass']} | {r['source']} | {r['docs_per_s']:.0f} | {r['stored_MB_per_s']:.1f} | "
                   f"{r['decoded_MB_per_s']:.1f} | {req} | {r['open_seconds']:.3f} | {r['seconds']:.2f} |")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, help="a local cache folder to read (and upload)")
    ap.add_argument("--encode", metavar="CORPUS", help="build the cache first: erpack encode CORPUS --model minilm "
                    "--layer 3 --codec int8z into --cache (or a temporary folder)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-shard-cache", action="store_true", help="skip the --shard-cache passes")
    ap.add_argument("--json", type=Path, help="write the result here")
    args = ap.parse_args(argv)
    if args.cache is None and args.encode is None:
        ap.error("give --cache, --encode, or both")
    from erpack.runtime.timing import describe_machine

    with tempfile.TemporaryDirectory(prefix="bench-scale-read-") as tmp:
        cache = args.cache or Path(tmp) / "cache"
        if args.encode:
            encode(args.encode, cache)
        with CacheReader(cache) as r:
            st = r.stats()
            info = {"cache": str(cache), "model": st.model.get("name"), "layer": st.layer, "codec": st.codec,
                    "documents": st.documents, "tokens": st.tokens, "shards": len(st.shards),
                    "bytes_on_disk": st.bytes_on_disk, "id_index": r.has_index}
        result = measure(cache, args.batch_size, args.seed, not args.no_shard_cache)
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else None
    result = {**info, **result, "batch_size": args.batch_size, "machine": describe_machine(), "loadavg_after": load,
              "command": " ".join([Path(sys.executable).name] + sys.argv)}
    print(f"cache {info['cache']}: {info['model']} layer {info['layer']} {info['codec']}, {info['documents']:,} "
          f"documents, {info['tokens']:,} tokens, {info['shards']} shards, {info['bytes_on_disk'] / 1e6:.1f} MB")
    print("\n".join(table(result["rows"])))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=lambda o: o.item() if isinstance(o, np.generic) else str(o)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
