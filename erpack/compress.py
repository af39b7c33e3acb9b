"""Measure codec pipelines on real activations, and re-encode a cache with another pipeline.

`measure(pipeline, arrays)` returns one row (`CodecMeasurement`): bits per value (every byte of every blob counted),
ratio against fp32, SQNR over the whole set, mean token cosine, and encode / decode speed in MB of
fp32 per second on one thread (decode timed apart from encode, record by record and in padded batches,
metrics outside the timed calls).
`load_raw(path)` reads raw activations from .npy (+ offsets) or .safetensors; `load_source` also
takes a cache folder; `recode_cache` writes a cache's documents into a new cache with a new codec
(`RecodeSummary`).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from erpack.batching import length_batches
from erpack.codecs import Pipeline
from erpack.codecs.metrics import Meter
from erpack.errors import CodecError, InputError
from erpack.store import CacheReader, CacheWriter
from erpack.store.location import Location

Record = tuple[str, np.ndarray]


@dataclass(frozen=True)
class CodecMeasurement:
    """One row of the codec table: a pipeline's size, quality and speed over a set of records."""

    spec: str
    lossless: bool
    docs: int
    tokens: int
    hidden: int
    bits_per_value: float  # every byte of every blob, per stored value
    ratio_vs_fp32: float
    sqnr_db: float | None  # over the whole set; None: decoded exactly
    mean_token_cosine: float
    encode_MBps: float  # MB of fp32 per second of this thread's CPU time, best pass
    decode_MBps: float  # record by record
    batch_decode_MBps: float  # into padded length-grouped batches
    batch_size: int

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SourceInfo:
    """Where measured records came from: a cache (with its codec spec and meta) or raw activations."""

    kind: str  # "cache" or "raw"
    codec: str | None = None  # the cache's pipeline spec
    meta: dict | None = None  # the cache's manifest meta (model identity, layer, tokenizer settings)


@dataclass(frozen=True)
class RecodeSummary:
    """What `recode_cache` wrote: the new cache folder, its pipeline, documents and bytes committed."""

    path: str
    spec: str
    documents: int
    bytes: int

    def as_dict(self) -> dict:
        return asdict(self)


def as_pipeline(pipeline) -> Pipeline:
    return pipeline if isinstance(pipeline, Pipeline) else Pipeline.from_spec(str(pipeline))


@contextlib.contextmanager
def single_thread(pipeline: Pipeline):
    """Pin torch (used by the bitsandbytes codecs) to one thread while timing; numpy and zstd are
    single-threaded already."""
    if not getattr(pipeline.array_codec, "needs_torch", False):
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def measure(pipeline, arrays: Iterable, progress: Callable[[int], None] | None = None, repeat: int = 1,
            batch_size: int = 32, tokens: Sequence | None = None) -> CodecMeasurement:
    """One row of the codec table for `pipeline` (a Pipeline or a spec string) over `arrays`
    (float32 (T, H) arrays, or (doc_id, array) pairs). Each pass encodes every record, decodes every
    blob record by record (`decode_MBps`: each array dropped, as a streaming reader does), then
    decodes them again as length-grouped padded batches of `batch_size` (`batch_decode_MBps`:
    `Pipeline.decode_batch` into reused batch arrays, what training, prediction and the benchmark
    read), each loop timed on its own. Speeds are MB of fp32 (real tokens only) per second of this
    thread's CPU time (other load on the machine does not count), the best of `repeat` passes. Sizes
    and quality come from the first pass. `progress(n)` is called after each pass with the records
    it covered. `tokens`: each record's token ids (int (T,)), handed to every encode and decode (a codec
    that needs them, `pipe.needs_tokens`, cannot be measured without); they are not counted in the bits."""
    pipe = as_pipeline(pipeline)
    records = [a[1] if isinstance(a, tuple) else a for a in arrays]
    if not records:
        raise InputError("nothing to measure: the source holds no documents")
    if tokens is not None and len(tokens) != len(records):
        raise InputError(f"measure: {len(tokens)} token id arrays for {len(records)} records")
    if tokens is None and pipe.needs_tokens:
        raise InputError(f"codec {pipe.spec} codes with each record's token ids and the source has none: measure it "
                         "on a cache written by `erpack encode` (raw activations carry no ids)")
    ids = list(tokens) if tokens is not None else [None] * len(records)
    meter = Meter()
    encode_s = decode_s = batch_s = math.inf
    clock = time.thread_time
    batches = length_batches([x.shape[0] for x in records], batch_size)
    # one reusable output per batch, touched once before timing: a consumer recycles its batch memory,
    # and first-touch page faults (slow on a VM) are the allocator's cost, not the codec's
    outs = [np.ones((len(b), max(records[i].shape[0] for i in b), records[b[0]].shape[1]), np.float32) for b in batches]
    with single_thread(pipe):
        pipe.decode(pipe.encode(records[0], ids[0]), records[0].shape, tokens=ids[0])  # warm-up: lazy imports, zstd contexts
        for rep in range(max(1, repeat)):
            t0 = clock()
            blobs = [pipe.encode(x, t) for x, t in zip(records, ids)]
            t1 = clock()
            for blob, x, t in zip(blobs, records, ids):  # streaming: each array is dropped, as a reader's consumer would
                pipe.decode(blob, x.shape, tokens=t)
            t2 = clock()
            for rows, out in zip(batches, outs):  # padded batches, as train / predict / bench read them
                pipe.decode_batch([blobs[i] for i in rows], [records[i].shape for i in rows], out,
                                  tokens=None if tokens is None else [ids[i] for i in rows])
            t3 = clock()
            encode_s, decode_s = min(encode_s, t1 - t0), min(decode_s, t2 - t1)
            batch_s = min(batch_s, t3 - t2)
            if rep == 0:  # quality from a separate, untimed decode
                for x, blob, t in zip(records, blobs, ids):
                    meter.add(x, pipe.decode(blob, x.shape, tokens=t), len(blob))
            if progress is not None:
                progress(len(records))
    mb = 4.0 * meter.values / 1e6  # fp32 megabytes
    sqnr = meter.sqnr_db
    return CodecMeasurement(
        spec=pipe.spec, lossless=pipe.lossless, docs=len(records), tokens=meter.tokens,
        hidden=int(records[0].shape[1]), bits_per_value=meter.bits_per_value,
        ratio_vs_fp32=32.0 / meter.bits_per_value, sqnr_db=None if math.isinf(sqnr) else sqnr,
        mean_token_cosine=meter.mean_token_cosine, encode_MBps=mb / max(encode_s, 1e-12),
        decode_MBps=mb / max(decode_s, 1e-12), batch_decode_MBps=mb / max(batch_s, 1e-12), batch_size=batch_size,
    )


# ---- raw activations -------------------------------------------------------------------------------
def load_raw(path, offsets=None) -> list[Record]:
    """Documents from raw activations: a .npy float array (N_tokens, H) with an offsets .npy
    (`offsets`, else `<stem>.offsets.npy` beside it), or a .safetensors file holding tensors
    `activations` (N_tokens, H) and `offsets` (N_docs + 1,) int64, and optionally a metadata entry
    `doc_ids` (a JSON list of strings). Offsets start at 0, rise strictly and end at N_tokens.
    Returns [(doc_id, float32 (T, H) array)]; ids default to the document's index."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file (expected a .npy or .safetensors file of activations, or a cache folder)")
    ids = None
    if path.suffix == ".npy":
        acts = _load_npy(path, "activations")
        if offsets is None:
            offsets = path.with_name(path.stem + ".offsets.npy")
            if not offsets.is_file():
                raise InputError(f"{path}: needs document offsets: pass --offsets FILE.npy or put them in {offsets.name}")
        off_path = Path(offsets)
        if not off_path.is_file():
            raise InputError(f"{off_path}: no such offsets file")
        off = _load_npy(off_path, "offsets")
    elif path.suffix == ".safetensors":
        acts, off, ids = _load_safetensors(path)
        off_path = path
    else:
        raise InputError(f"{path}: unknown activations format {path.suffix!r}; use .npy (+ offsets) or .safetensors")
    if acts.ndim != 2 or acts.dtype.kind != "f" or acts.shape[0] < 1 or acts.shape[1] < 1:
        raise InputError(f"{path}: activations must be a 2-D float array (tokens, hidden), got {acts.dtype} {acts.shape}")
    off = _check_offsets(off, acts.shape[0], off_path)
    n = len(off) - 1
    if ids is None:
        ids = [str(i) for i in range(n)]
    elif len(ids) != n:
        raise InputError(f"{path}: metadata doc_ids lists {len(ids)} ids for {n} documents")
    return [(ids[i], np.ascontiguousarray(acts[off[i] : off[i + 1]], dtype=np.float32)) for i in range(n)]


def _load_npy(path: Path, what: str) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(f"{path}: cannot read {what} as a .npy array without pickle ({exc})") from None


def _load_safetensors(path: Path):
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            names = set(f.keys())
            missing = {"activations", "offsets"} - names
            if missing:
                raise InputError(f"{path}: missing tensor(s) {sorted(missing)}; it holds {sorted(names)}")
            acts, off, meta = f.get_tensor("activations"), f.get_tensor("offsets"), f.metadata() or {}
    except InputError:
        raise
    except Exception as exc:  # safetensors raises its own error types, and TypeError for bf16 under numpy
        raise InputError(f"{path}: cannot read as safetensors with float32/float16 activations ({exc})") from None
    ids = None
    if "doc_ids" in meta:
        try:
            ids = json.loads(meta["doc_ids"])
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: metadata doc_ids is not JSON ({exc})") from None
        if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
            raise InputError(f"{path}: metadata doc_ids must be a JSON list of non-empty strings")
    return acts, off, ids


def _check_offsets(off: np.ndarray, n_tokens: int, path: Path) -> np.ndarray:
    if off.ndim != 1 or off.dtype.kind not in "iu" or len(off) < 2:
        raise InputError(f"{path}: offsets must be a 1-D integer array of N_docs + 1 entries, got {off.dtype} {off.shape}")
    off = np.asarray(off, dtype=np.int64)
    if off[0] != 0 or off[-1] != n_tokens:
        raise InputError(f"{path}: offsets must start at 0 and end at {n_tokens} (the token count), got {off[0]} .. {off[-1]}")
    bad = np.flatnonzero(np.diff(off) <= 0)
    if bad.size:
        raise InputError(
            f"{path}: offsets must rise strictly (every document has at least one token); "
            f"document {bad[0]} spans {off[bad[0]]} .. {off[bad[0] + 1]}"
        )
    return off


# ---- sources: raw files or cache folders -------------------------------------------------------------
def load_source(source, offsets=None, limit: int | None = None) -> tuple[list[Record], SourceInfo]:
    """(records, where they came from) from a raw activations file or a cache folder."""
    path = source if isinstance(source, Location) else Path(source)  # a Location: a cache at a URL
    if isinstance(path, Location) or path.is_dir():
        with CacheReader(path) as reader:
            records = []
            for doc_id, arr in reader:
                if limit is not None and len(records) >= limit:
                    break
                records.append((doc_id, arr))
            info = SourceInfo("cache", reader.codec.spec, reader.meta)
        return records, info
    records = load_raw(path, offsets)
    return (records[:limit] if limit is not None else records), SourceInfo("raw")


def recode_cache(source, dest, pipeline, limit: int | None = None, shard_docs: int = 1000,
                 progress: Callable[[int], None] | None = None) -> RecodeSummary:
    """Write the documents of cache `source` (its first `limit`) into a new cache `dest` encoded
    with `pipeline`, keeping meta, truncation flags, token hashes and token ids."""
    pipe = as_pipeline(pipeline)
    done = nbytes = 0
    with CacheReader(source) as reader, CacheWriter(dest, meta=reader.meta, codec=pipe, mode="create") as writer:
        ids = reader.ids()[:limit] if limit is not None else reader.ids()
        for start in range(0, len(ids), shard_docs):
            chunk = ids[start : start + shard_docs]
            truncated = [i for i in chunk if reader.info(i)["truncated"]]
            hashes = {i: h for i in chunk if (h := reader.token_hash(i)) is not None}
            tokens = {i: t for i in chunk if (t := reader.get_tokens(i)) is not None}
            info = writer.commit_shard([(i, reader.get(i)) for i in chunk], truncated=truncated, token_hashes=hashes,
                                       token_ids=tokens)
            done += info["documents"]
            nbytes += info["bytes"]
            if progress is not None:
                progress(len(chunk))
    return RecodeSummary(path=str(dest), spec=pipe.spec, documents=done, bytes=nbytes)


def spec_slug(spec: str) -> str:
    """A folder name for a spec: int8c:41+zstd:3 -> int8c-41_zstd-3."""
    slug = spec.replace("+", "_").replace(":", "-").replace(",", "-").replace("=", "")
    if not slug or any(c in slug for c in "/\\"):
        raise CodecError(f"spec {spec!r} cannot name a folder")
    return slug
