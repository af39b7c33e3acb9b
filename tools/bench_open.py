"""Open a cache of 100,000 shards and read one random record: seconds locally, requests on S3.

Builds a synthetic cache of N one-record shards (tiny fp32 records, 1 token x 8) through the real
format code: each shard by ShardBuilder and the codec, the manifest by dump_manifest, the id index by
idindex.write_index (written in bulk, not commit by commit, which would rewrite the manifest N times).
Then measures `CacheReader(cache)` plus one `get` of a random id:
  - locally: seconds (open, get, and the manifest's own load), through the index and, with
    --old-way, through the shard indexes (every shard opened, as before the index);
  - with --s3: the cache uploaded to moto's S3 server on loopback (the counting server of
    erpack.cluster.s3local), the requests open + get cost and their seconds.

Prints a human card, then one JSON document as the last line.

    python tools/bench_open.py --shards 100000 --s3 --old-way     # the figures in /work/notes/h2-figures.md
    python tools/bench_open.py --shards 2000 --s3                   # a smoke run
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from erpack.codecs import Pipeline
from erpack.store import CacheReader, idindex
from erpack.store.location import open_location
from erpack.store.manifest import MANIFEST, dump_manifest, new_manifest, shard_name
from erpack.store.shard import ShardBuilder

HIDDEN = 8
META = {"model": {"name": "bench-open", "model_type": "bert", "weights_sha256": "0" * 64, "num_layers": 2,
                  "hidden_size": HIDDEN}, "layer": 1, "max_length": 4, "tokenizer": {"name": "bench-open"}}


def _shard_bytes(codec, doc_id: str, x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    builder = ShardBuilder(buf)
    builder.add(doc_id.encode("utf-8"), memoryview(codec.encode(x)).cast("B"), x.shape[0], x.shape[1], 0, None)
    builder.finish()
    return buf.getvalue()


def build_local(folder: Path, shards: int, seed: int = 0) -> list[str]:
    """A cache of `shards` one-record shards in `folder` (new or empty), with its id index. Returns the ids."""
    folder.mkdir(parents=True, exist_ok=True)
    codec = Pipeline.from_spec("fp32")
    manifest = new_manifest(META, codec.get_config())
    rng = np.random.default_rng(seed)
    ids, entries = [], []
    for s in range(shards):
        doc_id = f"doc-{s:07d}"
        data = _shard_bytes(codec, doc_id, rng.standard_normal((1, HIDDEN)).astype(np.float32))
        name = shard_name(s)
        (folder / name).write_bytes(data)
        entries.append({"name": name, "documents": 1, "tokens": 1, "truncated": 0, "bytes": len(data),
                        "sha256": hashlib.sha256(data).hexdigest()})
        ids.append(doc_id)
    manifest["shards"] = entries
    manifest["counts"] = {"documents": shards, "tokens": shards, "truncated": 0, "records": shards,
                          "bytes": sum(e["bytes"] for e in entries)}
    manifest[idindex.FIELD] = idindex.write_index(folder, manifest)
    (folder / MANIFEST).write_bytes(dump_manifest(manifest))
    return ids


def upload(folder: Path, url: str, into_moto: bool = False) -> None:
    """Copy a local cache to a URL: shards and index parts first, the manifest last. `into_moto`: store
    the objects straight into the in-process moto server's S3 backend (100,000 PUTs through its HTTP
    front take about 10 minutes on 2 cores; what is measured, reading them back, goes through HTTP)."""
    loc = open_location(url)
    files = [p for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST] + [folder / MANIFEST]
    keys = [f"{loc.root}/{p.relative_to(folder).as_posix()}" for p in files]
    if into_moto:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        for p, key in zip(files, keys):
            bucket, name = key.split("/", 1)
            backend.put_object(bucket, name, p.read_bytes())
        return
    loc.fs.put([str(p) for p in files[:-1]], keys[:-1], batch_size=64)
    loc.upload(folder / MANIFEST, MANIFEST)


def build_cache(where: str, shards: int, local: Path, into_moto: bool = False) -> list[str]:
    """build_local into `local`, then upload to `where` when it is a URL. Returns the ids."""
    ids = build_local(Path(local), shards)
    if where != str(local):
        upload(Path(local), where, into_moto)
    return ids


def open_and_get(where, doc_id: str, **kwargs) -> tuple[str, np.ndarray]:
    """What is measured: open the cache, read one record, close."""
    with CacheReader(where, **kwargs) as r:
        return doc_id, r.get(doc_id)


def _timed(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def _s3_server():
    """A counting moto server on a free loopback port (erpack.cluster.s3local), its environment set."""
    from erpack.cluster.s3local import start_server

    s3 = start_server()
    os.environ.update(s3.env)
    return s3


def measure(shards: int, folder: Path, s3: bool, old_way: bool, seed: int = 0) -> dict:
    from erpack.runtime.timing import describe_machine
    from erpack.store.manifest import load_manifest

    t0 = time.perf_counter()
    ids = build_local(folder, shards, seed)
    built = time.perf_counter() - t0
    rng = random.Random(seed)
    target = rng.choice(ids)
    field = json.loads((folder / MANIFEST).read_bytes())[idindex.FIELD]
    out = {"shards": shards, "documents": len(ids), "manifest_bytes": (folder / MANIFEST).stat().st_size,
           "index_parts": len(field["parts"]), "index_bytes": sum(p["bytes"] for p in field["parts"]),
           "build_seconds": round(built, 1), "machine": describe_machine(), "command": " ".join(sys.argv)}
    local = [_timed(open_and_get, folder, rng.choice(ids)) for _ in range(3)]
    out["local"] = {"open_get_seconds": [round(t, 3) for t in local],
                    "manifest_load_seconds": round(_timed(load_manifest, folder), 3)}
    if old_way:
        out["local"]["old_way_open_get_seconds"] = round(_timed(open_and_get, folder, target, use_index=False), 2)
    if s3:
        import boto3

        server = _s3_server()
        try:
            boto3.client("s3", endpoint_url=server.endpoint).create_bucket(Bucket="bench-open")
            url = "s3://bench-open/cache"
            t0 = time.perf_counter()
            upload(folder, url, into_moto=True)
            uploaded = time.perf_counter() - t0
            runs = []
            for _ in range(3):
                doc_id = rng.choice(ids)
                before = server.requests()
                seconds = _timed(open_and_get, url, doc_id)
                runs.append({"requests": server.requests() - before, "seconds": round(seconds, 3),
                             "log": [f"{m} {p} {r}".strip() for m, p, r in server.log[before:]]})
            out["s3"] = {"upload_seconds": round(uploaded, 1), "runs": runs}
        finally:
            server.server.stop()
    return out


def card(r: dict) -> list[str]:
    lines = [f"synthetic cache: {r['shards']:,} shards, {r['documents']:,} documents (1 token x {HIDDEN}), built in "
             f"{r['build_seconds']} s; manifest {r['manifest_bytes'] / 1e6:.1f} MB; id index "
             f"{r['index_parts']} part(s), {r['index_bytes'] / 1e6:.2f} MB",
             f"local open + get: {', '.join(f'{t:.3f}' for t in r['local']['open_get_seconds'])} s "
             f"(of which the manifest load {r['local']['manifest_load_seconds']:.3f} s)"]
    if "old_way_open_get_seconds" in r["local"]:
        lines.append(f"local open + get through the shard indexes (no id index): "
                     f"{r['local']['old_way_open_get_seconds']} s")
    for run in r.get("s3", {}).get("runs", []):
        lines.append(f"S3 open + get: {run['requests']} requests, {run['seconds']:.3f} s: {'; '.join(run['log'])}")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=100_000)
    ap.add_argument("--out", type=Path, help="folder for the local cache (default: a temporary one)")
    ap.add_argument("--s3", action="store_true", help="also upload it to a local S3 server and count requests")
    ap.add_argument("--old-way", action="store_true", help="also time opening through every shard index")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-open-") as tmp:
        folder = args.out or Path(tmp) / "cache"
        result = measure(args.shards, folder, args.s3, args.old_way)
    print("\n".join(card(result)))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
