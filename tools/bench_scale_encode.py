"""Encode throughput: one process against Ray Data with 1 and 2 workers, and Ray's per-document overhead.

    python tools/bench_scale_encode.py                         # 3000 reviews, MiniLM k=3, int8c+zstd:3
    python tools/bench_scale_encode.py --documents 500 --output results.json

Each engine encodes the same Rotten Tomatoes reviews into a fresh local cache. Torch threads are the
machine's CPUs in all (one process: all of them; Ray, 1 worker: all of them, then half of them; 2
workers: half each), so no run oversubscribes the cores. Scaling (2 workers against 1) compares
workers of the same size (half the CPUs each); 1 worker with all the CPUs shows what splitting one
node into two workers buys. Three rates per run: end to end (start of the call to the
summary, so Ray's start, the read and the workers' model load are in it), busy (documents over the
workers' busy window, from the first batch a worker started to the last one finished: the rate a
long run settles at; the one-process run's own seconds for it) and steady (from the first shard the
driver receives to the last). Ray's per-document overhead
is measured apart: the same read, repartition and actor pool with an actor that does no work. Prints
a human card and one JSON document as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CODEC = "int8c+zstd:3"


class Clock:
    """A progress factory (as the CLI passes one) that records when documents were reported done."""

    def __init__(self):
        self.marks: list[tuple[float, int]] = []  # (time, documents so far)
        self.done = 0

    def __call__(self, **kw):
        return self

    def update(self, n=1):
        self.done += n
        self.marks.append((time.perf_counter(), self.done))

    def set_postfix(self, *a, **kw):
        pass

    def close(self):
        pass

    def steady(self) -> float | None:
        """Documents per second from the first report to the last (the first shard's documents left out)."""
        if len(self.marks) < 2:
            return None
        (t0, d0), (t1, d1) = self.marks[0], self.marks[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else None


class Noop:
    """An actor that does nothing with its batch: what Ray Data costs per document by itself."""

    def __call__(self, batch):
        return {"n": [batch.num_rows]}


def ray_overhead(corpus: Path, shard_size: int) -> dict:
    from erpack.cluster.encode import read_corpus
    from erpack.cluster.session import connect
    from erpack.corpus import Columns

    ray = connect(workers=1)
    ds = read_corpus(ray, str(corpus), Columns())
    start = time.perf_counter()
    stage = ds.repartition(target_num_rows_per_block=shard_size).map_batches(
        Noop, batch_size=shard_size, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=1), num_cpus=1)
    marks = []
    for row in stage.iter_rows():
        marks.append((time.perf_counter(), row["n"]))
    total = time.perf_counter() - start
    docs = sum(n for _, n in marks)
    steady = (marks[-1][0] - marks[0][0]) / (docs - marks[0][1]) if len(marks) > 1 else None
    ray.shutdown()
    return {"documents": docs, "seconds": total, "us_per_document_end_to_end": 1e6 * total / docs,
            "us_per_document_steady": 1e6 * steady if steady else None}


def run_single(corpus: Path, out: Path, args) -> dict:
    import torch

    from erpack.encode import encode_corpus

    torch.set_num_threads(os.cpu_count() or 1)
    clock = Clock()
    start = time.perf_counter()
    s = encode_corpus(str(corpus), out, model=args.model, layer=args.layer, codec=CODEC, shard_size=args.shard_size,
                      device="cpu", progress=clock)
    wall = time.perf_counter() - start
    return {"engine": "single", "workers": 1, "threads_per_worker": torch.get_num_threads(), "encoded": s.encoded,
            "seconds": wall, "docs_per_s": s.encoded / wall, "steady_docs_per_s": clock.steady(),
            "workers_seconds": s.seconds, "workers_docs_per_s": s.encoded / s.seconds}


def run_ray(corpus: Path, out: Path, args, workers: int, threads: int | None = None) -> dict:
    from erpack.cluster.encode import RayOptions, encode_on_ray
    from erpack.cluster.session import connect

    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    ray = connect(workers=workers)
    clock = Clock()
    start = time.perf_counter()
    s = encode_on_ray(str(corpus), str(out), model=args.model, layer=args.layer, codec=CODEC,
                      shard_size=args.shard_size, device="cpu", progress=clock,
                      ray_options=RayOptions(workers=workers, threads_per_worker=threads))
    wall = time.perf_counter() - start
    ray.shutdown()
    return {"engine": "ray", "workers": workers, "threads_per_worker": threads, "encoded": s.encoded,
            "seconds": wall, "docs_per_s": s.encoded / wall, "steady_docs_per_s": clock.steady(),
            "workers_seconds": s.workers_seconds, "workers_docs_per_s": s.encoded / s.workers_seconds}


def s3_check(corpus: Path, single: Path, work: Path, args) -> dict:
    """Ray, 2 workers, into s3:// on a local S3 server (moto): verify, then compare with one process."""
    from erpack.cluster.parity import compare_caches
    from erpack.cluster.s3local import local_s3
    from erpack.store import verify_cache

    with local_s3("erpack-bench") as s3:
        url = f"{s3.url}/cache"
        run = run_ray(corpus, url, args, 2)
        report = verify_cache(url)
        parity = compare_caches(single, url)  # read where it lies: the reader takes URLs
    return {"url": url, "run": run, "verify_ok": report.ok, **parity.as_dict(),
            "within_one_step": parity.within_step(1.0)}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--documents", type=int, default=3000)
    p.add_argument("--model", default="minilm")
    p.add_argument("--layer", type=int, default=3)
    p.add_argument("--shard-size", type=int, default=64)
    p.add_argument("--s3", action="store_true", help="also encode with 2 workers into s3:// on a local S3 "
                   "server (moto), verify it and compare it with the one-process cache")
    p.add_argument("--output", type=Path, default=None, help="also write the JSON results here")
    args = p.parse_args(argv)
    from erpack.assets import load_dataset

    work = Path(tempfile.mkdtemp(prefix="erpack-bench-scale-"))
    corpus = work / "corpus.jsonl"
    rows = load_dataset("rotten_tomatoes", limit=args.documents)
    corpus.write_text("".join(json.dumps({"id": r.id, "text": r.text}) + "\n" for r in rows))
    runs = [run_single(corpus, work / "single", args)]
    half = max(1, (os.cpu_count() or 1) // 2)
    runs.append(run_ray(corpus, work / "ray1", args, 1))  # one worker with the whole machine
    runs.append(run_ray(corpus, work / "ray1h", args, 1, threads=half))  # one worker with a worker's share
    runs.append(run_ray(corpus, work / "ray2", args, 2))
    overhead = ray_overhead(corpus, args.shard_size)
    s3 = s3_check(corpus, work / "single", work, args) if args.s3 else None
    by = {(r["engine"], r["workers"], r["threads_per_worker"]): r for r in runs}
    two = by[("ray", 2, half)]
    one = by[("ray", 1, half)]  # scaling: the same threads per worker, twice the workers
    whole = by[("ray", 1, runs[1]["threads_per_worker"])]
    result = {
        "command": " ".join(["python", "tools/bench_scale_encode.py", *(argv or sys.argv[1:])]),
        "machine": machine(), "documents": len(rows), "model": args.model, "layer": args.layer, "codec": CODEC,
        "shard_size": args.shard_size, "runs": runs, "ray_overhead": overhead,
        "speedup_2_vs_1_workers": two["workers_docs_per_s"] / one["workers_docs_per_s"],
        "speedup_2_vs_1_workers_steady": (two["steady_docs_per_s"] / one["steady_docs_per_s"]
                                          if one["steady_docs_per_s"] and two["steady_docs_per_s"] else None),
        "speedup_2_vs_1_workers_end_to_end": two["docs_per_s"] / one["docs_per_s"],
        # the same 2 cores as one worker with every thread, or as 2 workers: what splitting a node buys
        "speedup_2_workers_vs_1_worker_all_threads": two["workers_docs_per_s"] / whole["workers_docs_per_s"],
        "s3": s3,
    }
    print(f"{'engine':<8} {'workers':>7} {'threads':>7} {'seconds':>8} {'doc/s':>8} {'busy s':>7} {'busy doc/s':>10}"
          f" {'steady doc/s':>13}")
    for r in runs:
        steady = f"{r['steady_docs_per_s']:.1f}" if r["steady_docs_per_s"] else "-"
        print(f"{r['engine']:<8} {r['workers']:>7} {r['threads_per_worker']:>7} {r['seconds']:>8.1f} "
              f"{r['docs_per_s']:>8.1f} {r['workers_seconds']:>7.1f} {r['workers_docs_per_s']:>10.1f} {steady:>13}")
    print(f"Ray Data alone (no-op actor): {overhead['us_per_document_end_to_end']:.0f} us/doc end to end, "
          f"{overhead['us_per_document_steady'] or float('nan'):.0f} us/doc steady")
    if s3:
        print(f"s3 (2 workers): verify {'ok' if s3['verify_ok'] else 'FAILED'}, {s3['documents']} documents, same ids "
              f"{s3['same_ids']}, max diff {s3['max_abs_diff']:.3g} = {s3['max_diff_in_steps']:.3g} codec steps")
    if args.output:
        args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
