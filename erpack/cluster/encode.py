"""Distributed encode on Ray Data (`erpack encode CORPUS -o URL --engine ray`).

    driver                                   workers (an actor pool, `workers` actors)
    ──────                                   ───────
    CacheWriter(url, mode="append")          Encoder(): loads the lower stack once (LowerRun)
      removes unlisted leftover shards       __call__(batch of <= shard_size documents):
    ray.data.read_{json,csv,parquet}(...)      drop ids already in the cache
      .map_batches(Encoder, concurrency=N,     tokenize, length-grouped batches (Tokenized.lower)
                   num_gpus=G)  ──────────►    write_shard(url, "shard-<run><actor>-NNNNNN.ers")
    for entry in results (streamed):  ◄──────  return the shard entry (a JSON string)
      commit_entries(every few entries)
    close: the manifest lists them all

A shard is published whole by the worker that wrote it, but belongs to the cache only once the
driver lists it in the manifest (commit_entries, one manifest write for several shards). A crash of
the driver loses at most the uncommitted shards: the next run's CacheWriter deletes them when it
opens, and the ids they held are encoded again. A worker killed mid-batch is restarted by Ray and
its batch retried (Ray Data's default for actor pools); a shard the dead worker had published but not
returned is never listed, and is deleted when the run ends. Names carry the run and the actor
(`<run><actor>` as the shard tag), so two writers never choose the same name.

Records equal a single-process encode's up to floating-point differences from batching: the same
tokenizer, truncation, token hash and lower stack (erpack.encode.Tokenized, LowerRun). A document whose
id is cached is tokenized and compared by token hash, as on one process: unchanged ones are skipped
(resume), a changed one stops the run with its file and id named (only --on-duplicate error here).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from erpack import errors
from erpack.cluster.session import connect, worker_env
from erpack.codecs import Pipeline
from erpack.corpus import KNOWN, Columns, check_document, corpus_files, parquet_columns
from erpack.encode import DEFAULT_CODEC, EncodeSummary, LowerRun, Tokenized, _Bar, cache_meta
from erpack.errors import ErpackError, InputError
from erpack.store import CacheWriter
from erpack.store.location import is_remote
from erpack.store.manifest import shard_name
from erpack.store.shard import RecordLimits
from erpack.store.writer import write_shard

COMMIT_EVERY = 8  # shards listed per manifest write
COMMIT_SECONDS = 10.0  # ... or fewer when this long has passed since the last commit


@dataclass
class RayOptions:
    """Where and how wide to run: `address` of a running cluster (None: a local instance), `workers`
    actors, `gpus_per_worker` GPUs each (0: CPU), `threads_per_worker` torch threads each (None: the
    machine's CPUs shared among the local workers), `cpus_per_worker` Ray CPUs each (None: 1, or less
    when the cluster has too few CPUs to leave one for reading the corpus)."""

    address: str | None = None
    workers: int = 1
    gpus_per_worker: float = 0
    threads_per_worker: int | None = None
    cpus_per_worker: float | None = None

    def __post_init__(self):
        if self.workers < 1:
            raise InputError(f"--workers must be >= 1, got {self.workers}")
        if self.gpus_per_worker < 0:
            raise InputError(f"--gpus-per-worker must be >= 0, got {self.gpus_per_worker}")
        if self.threads_per_worker is not None and self.threads_per_worker < 1:
            raise InputError(f"threads per worker must be >= 1, got {self.threads_per_worker}")

    def cpus(self, cluster_cpus: float) -> float:
        """Ray CPUs per actor: the actors never take the last CPU, which reading the corpus needs."""
        if self.cpus_per_worker is not None:
            return self.cpus_per_worker
        return max(0.1, min(1.0, (cluster_cpus - 1) / self.workers))

    def threads(self) -> int:
        if self.threads_per_worker:
            return self.threads_per_worker
        if self.address:  # a cluster node: torch's own default
            return 0
        return max(1, (os.cpu_count() or 1) // self.workers)


# ---- reading the corpus with Ray Data ---------------------------------------------------------------
def read_corpus(ray, source: str, cols: Columns, storage_options: dict | None = None):
    """A Ray Dataset of the corpus with columns id, text, text_pair (None where absent) and path."""
    if is_remote(source):
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        fmt, files = corpus_files(source, storage_options)  # the same listing as the single-process engine
        paths, filesystem = [f.path for f in files], PyFileSystem(FSSpecHandler(files[0].fs))
    else:
        found = corpus_files(source.removeprefix("file://"))
        if found is None:
            raise InputError(f"corpus {source} does not exist; --engine ray reads {KNOWN} (built-in data sets: "
                             f"the single-process engine)")
        fmt, files = found
        paths, filesystem = [str(p.resolve()) for p in files], None
    common = {"filesystem": filesystem, "include_paths": True, "file_extensions": None,
              "runtime_env": {"env_vars": worker_env()}}  # credentials for the read tasks too
    try:
        if fmt == "jsonl" and filesystem is not None:  # Ray's lines=True reader takes no file system;
            ds = ray.data.read_json(paths, **common)       # Arrow's JSON reader reads JSON lines too
        elif fmt == "jsonl":
            ds = ray.data.read_json(paths, lines=True, **common)
        elif fmt == "csv":
            ds = ray.data.read_csv(paths, **common)
        else:
            ds = ray.data.read_parquet(paths, **common)
        names = ds.schema().names
    except ErpackError:
        raise
    except Exception as exc:  # Arrow's parse errors: a malformed line, mixed types in a column
        raise InputError(f"corpus {source}: Ray Data cannot read it ({_first_line(exc)}); check the file with "
                         f"`erpack encode` (single-process), which names the bad line") from None
    if cols.id_key not in names:
        raise InputError(f"{source}: no column {cols.id_key!r} for ids (--id-column); the files have columns "
                         f"{[n for n in names if n != 'path']}" + (" (the single-process engine gives a CSV "
                                                                    "without ids generated ones)" if fmt == "csv" else ""))
    parquet_columns(source, names, cols)  # the text (and named pair) column, else InputError
    keep = [cols.id_key, cols.text, "path"] + ([cols.pair_key] if cols.pair_key in names else [])
    return ds.select_columns(keep)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


# ---- the workers ------------------------------------------------------------------------------------
class Encoder:
    """One actor: the lower stack loaded once; each call encodes one batch of documents into one shard
    and returns its entry as a JSON string ({"skipped": n} when every document was cached)."""

    def __init__(self, model: str, layer: int, max_length: int, device: str | None, codec: str, output: str,
                 storage_options: dict | None, run_tag: str, cached: list, columns: Columns, meta: dict,
                 batch_size: int, max_tokens: int, threads: int):
        import ray
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.run = LowerRun.open(model, layer, max_length, device)
        self.pipeline = Pipeline.from_spec(codec)
        self.output, self.storage_options = output, storage_options
        self.tag = run_tag + secrets.token_hex(4)  # this actor's shard names: shard-<run><actor>-NNNNNN.ers
        self.next = 0
        self.cached = ray.get(cached[0]) if cached else {}  # {id: token hash or None}
        self.cols, self.limits = columns, RecordLimits.from_meta(meta)
        self.batch_size, self.max_tokens = batch_size, max_tokens
        if pids := os.environ.get("ERPACK_WORKER_PIDS"):  # tests kill workers by pid
            with open(pids, "a") as f:
                f.write(f"{os.getpid()}\n")

    def __call__(self, batch):
        try:
            return {"entry": [json.dumps(self._encode(batch))]}
        except ErpackError as exc:  # bad input: handed to the driver, which raises it (not retried)
            return {"entry": [json.dumps({"error": str(exc), "kind": type(exc).__name__})]}

    def _triage(self, tok: Tokenized) -> tuple[list[int], int, int]:
        """(positions to encode, cached and unchanged, cached without a stored hash). A cached document
        whose token hash differs from the stored one changed since it was encoded: an InputError, as the
        single-process engine's --on-duplicate error gives (nothing stale is kept as if current)."""
        todo, unchanged, unverified = [], 0, 0
        for k, (doc, h) in enumerate(zip(tok.docs, tok.hashes)):
            if doc.id not in self.cached:
                todo.append(k)
            elif self.cached[doc.id] is None:
                unverified += 1
            elif self.cached[doc.id] == h:
                unchanged += 1
            else:
                raise InputError(
                    f"{doc.where}: document {doc.id!r} changed since it was encoded into {self.output}: its "
                    f"tokens differ from the cached record's. The shards committed before it are kept. Encode "
                    f"the changed documents into a new cache, or with the single-process engine and "
                    f"--on-duplicate replace")
        return todo, unchanged, unverified

    def _encode(self, batch) -> dict:
        started = time.time()  # wall clock: comparable across the workers of a cluster (NTP)
        cols = self.cols
        ids = batch[cols.id_key].to_pylist()
        texts = batch[cols.text].to_pylist()
        pairs = batch[cols.pair_key].to_pylist() if cols.pair_key in batch.column_names else [None] * len(ids)
        paths = batch["path"].to_pylist()
        docs, seen = [], set()
        for doc_id, text, pair, path in zip(ids, texts, pairs, paths):
            doc = check_document(doc_id, text, pair, path, cols)
            if doc.id in seen:
                raise InputError(f"{path}: id {doc.id!r} is given twice in the corpus; ids must be unique")
            seen.add(doc.id)
            docs.append(doc)
        tok = Tokenized.of(self.run, docs)
        todo, unchanged, unverified = self._triage(tok)
        skipped = unchanged + unverified
        if not todo:
            return {"skipped": skipped, "unchanged": unchanged, "unverified": unverified}
        records, truncated, hashes, ids = tok.lower(self.run, todo, self.batch_size, self.max_tokens)
        name = shard_name(self.next, tag=self.tag)
        self.next += 1
        entry = write_shard(self.output, name, records, self.pipeline, limits=self.limits, truncated=truncated,
                            token_hashes=hashes, storage_options=self.storage_options, token_ids=ids)
        entry.update(skipped=skipped, unchanged=unchanged, unverified=unverified, truncated_ids=truncated, device=str(self.run.device), started=started,
                     finished=time.time())
        return entry


# ---- the driver -------------------------------------------------------------------------------------
def _worker_error(entry: dict) -> ErpackError:
    """The error a worker reported ({"error", "kind"}), as the erpack error class it was."""
    cls = getattr(errors, entry.get("kind", ""), None)
    if not (isinstance(cls, type) and issubclass(cls, ErpackError)):
        cls = ErpackError
    try:
        return cls(entry["error"])
    except TypeError:  # a class that takes other arguments
        return ErpackError(entry["error"])


class _Committer:
    """Lists published shards in the manifest: every COMMIT_EVERY entries or COMMIT_SECONDS."""

    def __init__(self, writer: CacheWriter):
        self.writer = writer
        self.pending: list[dict] = []
        self.last = time.monotonic()

    def add(self, entry: dict) -> None:
        self.pending.append(entry)
        if len(self.pending) >= COMMIT_EVERY or time.monotonic() - self.last >= COMMIT_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.writer.commit_entries(self.pending)  # one manifest write: the commit point
            self.pending = []
        self.last = time.monotonic()


def _encode_stage(ray, ds, opts: RayOptions, shard_size: int, constructor: dict):
    """ds -> one row {"entry": JSON} per batch of shard_size documents, encoded by an actor pool of
    opts.workers Encoders. A worker process that dies is restarted and its batch retried: Ray Data's
    actor pools do that by default (max_restarts=-1, max_task_retries=-1), which is what erpack relies
    on; Ray Data has no named parameter for it (the old `**ray_remote_args` route is deprecated)."""
    blocks = ds.repartition(target_num_rows_per_block=shard_size)  # streamed: one file still feeds N workers
    return blocks.map_batches(
        Encoder, batch_size=shard_size, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=opts.workers),
        num_cpus=opts.cpus(ray.cluster_resources().get("CPU", 1.0)),
        num_gpus=opts.gpus_per_worker or None, fn_constructor_kwargs=constructor,
        runtime_env={"env_vars": worker_env()})


def _remove_unlisted(writer: CacheWriter, run_tag: str) -> list[str]:
    """Delete shards of this run that no manifest lists (published by a worker that died before
    returning them; their batch was retried)."""
    listed = {s["name"] for s in writer.manifest["shards"]}
    gone = [n for n in writer.location.listdir() if n.startswith(f"shard-{run_tag}") and n not in listed]
    for name in gone:
        writer.location.delete(name)
    return gone


def encode_on_ray(
    source: str,
    output: str,
    model: str = "minilm",
    layer: int | None = None,
    codec: str = DEFAULT_CODEC,
    max_length: int | None = None,
    batch_size: int = 32,
    max_tokens: int = 16384,
    shard_size: int = 1024,
    device: str | None = None,
    progress: Callable | None = None,
    columns: Columns | None = None,
    ray_options: RayOptions | None = None,
    storage_options: dict | None = None,
) -> EncodeSummary:
    """Encode `source` (JSONL, CSV or Parquet: a file, folder or glob, local or a URL) into the cache
    `output` (a folder or URL) on Ray: see the module docstring. Documents whose id is cached and
    whose tokens are unchanged are skipped (resume); a changed one is an InputError; each shard holds
    at most `shard_size` documents."""
    if shard_size < 1:
        raise InputError(f"shard_size must be >= 1, got {shard_size}")
    opts = ray_options or RayOptions()
    cols = columns or Columns()
    pipeline = Pipeline.from_spec(codec)  # an unknown codec fails here, before any work
    ray = connect(opts.address, opts.workers)
    ds = read_corpus(ray, source, cols, storage_options)
    run = LowerRun.open(model, layer, max_length, "cpu")  # the driver needs the cache's meta only
    meta = cache_meta(run.loaded, run.layer, run.max_length)
    del run
    summary = EncodeSummary(output=str(output), model=model, layer=meta["layer"], codec=pipeline.spec,
                            device=str(device or "auto"), engine="ray", workers=opts.workers)
    run_tag = secrets.token_hex(4)
    bar = _Bar(progress, None)
    try:
        with CacheWriter(output, meta=meta, codec=pipeline, mode="append", on_duplicate="error",
                         storage_options=storage_options) as writer:
            summary.removed_leftovers = list(writer.removed)
            summary.existing_documents = writer.manifest["counts"]["documents"]
            # the live ids and their token hashes: a cached document is compared, never trusted by id
            cached = [ray.put({i: writer.token_hash(i) for i in writer.ids()})] if len(writer) else []
            constructor = dict(
                model=model, layer=meta["layer"], max_length=meta["max_length"], device=device,
                codec=pipeline.spec, output=str(output), storage_options=storage_options, run_tag=run_tag,
                cached=cached, columns=cols, meta=meta, batch_size=batch_size, max_tokens=max_tokens,
                threads=opts.threads())
            results = _encode_stage(ray, ds, opts, shard_size, constructor)
            committer, window = _Committer(writer), []
            for row in results.iter_rows():
                entry = json.loads(row["entry"])
                if "error" in entry:
                    committer.flush()  # what the workers finished stays committed
                    raise _worker_error(entry)
                _count(summary, entry, bar, window)
                if "name" in entry:
                    for key in ("skipped", "truncated_ids", "device", "started", "finished"):
                        entry.pop(key, None)
                    committer.add(entry)
            committer.flush()
            _remove_unlisted(writer, run_tag)
            counts = writer.manifest["counts"]
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - bar.start
    if window:
        summary.workers_seconds = max(window) - min(window)
    summary.cache_documents, summary.cache_tokens, summary.cache_bytes = (
        counts["documents"], counts["tokens"], counts["bytes"])
    return summary


def _count(summary: EncodeSummary, entry: dict, bar: _Bar, window: list[float]) -> None:
    """Add a worker's entry to the summary and the bar; `window` collects when its batch started and ended."""
    skipped = entry.get("skipped", 0)
    summary.documents_in_corpus += skipped + entry.get("documents", 0)
    summary.already_in_cache += skipped
    summary.unchanged += entry.get("unchanged", 0)
    summary.unverified += entry.get("unverified", 0)
    bar.skipped(skipped)
    if "name" not in entry:
        return
    summary.encoded += entry["documents"]
    summary.tokens += entry["tokens"]
    summary.truncated += entry["truncated"]
    summary.truncated_ids.extend(entry.get("truncated_ids", []))
    summary.device = entry.get("device", summary.device)
    window.append(entry["started"])
    window.append(entry["finished"])
    bar.on_batch(entry["documents"], entry["tokens"])
