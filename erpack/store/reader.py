"""CacheReader: random access by document id and in-order iteration over a cache, local or remote.

A cache is a folder or any fsspec URL (erpack.store.location). Opening reads manifest.json and,
when the manifest has an id index (erpack/store/idindex.py), nothing else: `get(id)` then reads one
index part (kept in a small cache) and the record, by one range request on object storage (a
local shard is memory-mapped). Shards are opened on first use, at most `max_open_shards` at a time
(the least recently used is closed). Shards the index does not cover (committed after it was
written, or every shard of a cache written before the index existed) are opened when the reader
opens and read through their own indexes, as before. The reader sees exactly the shards its
manifest lists: a writer appending meanwhile adds shards it will not see, and never changes the
ones it reads. Reading never modifies the cache.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from erpack.batching import mask_from_lengths
from erpack.errors import CodecError, CorruptRecordError, StoreError
from erpack.store import codec_state, idindex
from erpack.store import format as fmt
from erpack.store.format import FLAG_TRUNCATED
from erpack.store.inspect import CacheStats, cache_stats
from erpack.store.location import open_location
from erpack.store.manifest import load_manifest, mismatch_error, subset_mismatches
from erpack.store.shard import VERIFY_HINT, RecordLimits, ShardFile, decode_payload, missing_tokens
from erpack.store.verify import VerifyReport, verify_cache

MAX_OPEN_SHARDS = 256
LIVE = np.dtype([("shard", "<u4"), ("record", "<u4"), ("tokens", "<u4"), ("flags", "<u4"), ("length", "<u8"),
                 ("payload_len", "<u8"), ("token_hash", "<u8")])  # what live_records reports of a record


def _live_rows(entries: np.ndarray) -> np.ndarray:
    """LIVE rows of id-index entries."""
    t = np.zeros(len(entries), LIVE)
    for name in LIVE.names:
        t[name] = entries[name]
    return t


@dataclass
class LiveRecords:
    """One listed shard and its live records (the newest record of each id), in record order.

    `count` and `size`: all its records (live or dead) and bytes, from the manifest. Per live record:
    `records` (its number in the shard), `ids`, `tokens`, `sizes` (bytes in the file, padding
    included), `payload_len`, `flags` (FLAG_TRUNCATED), `token_hashes` (u64; 0 where unknown)."""

    name: str
    count: int
    size: int
    ids: list[str]
    records: np.ndarray
    tokens: np.ndarray
    sizes: np.ndarray
    payload_len: np.ndarray
    flags: np.ndarray
    token_hashes: np.ndarray

    @property
    def live(self) -> int:
        return len(self.ids)

OPEN_THREADS = 16  # remote shards the index does not cover, opened at once


class MissingDocumentError(StoreError, KeyError):
    """A document id the cache does not hold (a KeyError too, so dict-style code works)."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


class _IndexedRecord:
    """A record read by one range request at the offset the id index gives (no shard opened); names
    the record in errors as ShardFile.record_error does."""

    def __init__(self, location, name: str, entry: idindex.IndexEntry):
        self.location, self.name, self.entry = location, name, entry

    def record_error(self, i: int, what: str) -> CorruptRecordError:
        e = self.entry
        exc = CorruptRecordError(f"shard {self.location / self.name}, record {i} (doc id {e.doc_id!r}) at byte "
                                 f"offset {e.offset}: {what}; " + VERIFY_HINT.format(cache=self.location))
        exc.shard, exc.record_index, exc.doc_id, exc.offset, exc.reason = self.name, i, e.doc_id, e.offset, what
        return exc

    def read(self, verify: bool, limits: RecordLimits, data: bytes | None = None
             ) -> tuple[memoryview, tuple[int, int], int, np.ndarray | None]:
        """(payload, (tokens, hidden), flags, token ids or None), checked as ShardFile.read_record
        checks a record, against the index entry instead of the shard index. `data`: the record's
        bytes, when already fetched."""
        e = self.entry
        try:
            if data is None:
                data = self.location.read(self.name, e.offset, e.offset + e.length)
        except FileNotFoundError:
            raise StoreError(f"shard {self.location / self.name} is listed in {self.location / 'manifest.json'} "
                             f"but missing: the cache was edited by hand or copied incompletely") from None
        if len(data) != e.length:
            raise self.record_error(e.record, f"{len(data)} bytes where the id index says {e.length}: the shard "
                                              f"changed after it was committed")
        try:
            flags, tokens, hidden, plen, id_len, crc = fmt.unpack_record_header(data, 0)
        except fmt.FramingError as exc:
            raise self.record_error(e.record, str(exc)) from None
        if (plen, tokens, flags, crc) != (e.payload_len, e.tokens, e.flags, e.crc32):
            raise self.record_error(e.record, "record header disagrees with the id index")
        problem = fmt.flags_problem(flags, fmt.SHARD_VERSION)
        if problem:
            raise self.record_error(e.record, problem)
        tok_len = fmt.token_bytes(flags, tokens)
        end = fmt.RECORD_HEADER.size + plen + tok_len + id_len
        if end > e.length or e.length - end != fmt.padding(end) or any(data[end:]):
            raise self.record_error(e.record, "the record does not fill its bytes and zero padding")
        problem = limits.problem(tokens, hidden)
        if problem:
            raise self.record_error(e.record, problem)
        if verify and fmt.record_crc(data, 0, plen, id_len, tok_len) != crc:
            raise self.record_error(e.record, "crc32 mismatch (the bytes changed after they were written)")
        start = fmt.RECORD_HEADER.size
        if verify and data[start + plen + tok_len : end] != e.doc_id.encode("utf-8"):
            raise self.record_error(e.record, "record id disagrees with the id index")
        ids = fmt.unpack_token_ids(data, start + plen, flags, tokens) if tok_len else None
        return memoryview(data)[start : start + plen], (tokens, hidden), flags, ids


class CacheReader:
    """Read-only view of a cache: a folder path or an fsspec URL (`storage_options` go to the file
    system). `verify_checksums=False` skips the per-record crc32 (the framing and each record's (T, H)
    against the manifest are still checked). `shard_cache`: a local folder where remote shards are
    downloaded whole, checked against their sha256, and memory-mapped. `use_index=False` ignores the
    id index (reads every shard index at open, as a cache without one is read). `max_open_shards`: how
    many shards stay open (the least recently used beyond it is forgotten)."""

    def __init__(self, where, verify_checksums: bool = True, storage_options: dict | None = None,
                 shard_cache=None, use_index: bool = True, max_open_shards: int = MAX_OPEN_SHARDS):
        self.location = open_location(where, storage_options)
        self.path: Path | None = self.location.local  # None for a remote cache
        self.verify_checksums = verify_checksums
        self.shard_cache = None if shard_cache is None else Path(shard_cache)
        self.manifest = load_manifest(self.location)
        self.meta = self.manifest["meta"]
        self.codec = codec_state.cache_codec(self.location, self.manifest)  # fitted state attached
        self.limits = RecordLimits.from_meta(self.meta)  # every record's (T, H) is checked against it
        self._specs = self.manifest["shards"]
        self._open: OrderedDict[int, ShardFile] = OrderedDict()
        self._lock = threading.Lock()
        self._closed = False
        field = self.manifest.get(idindex.FIELD) if use_index else None
        self._index = idindex.IdIndex(self.location, field) if field else None
        self._covered = field["shards"] if field else 0
        # bounded even without an index: every open local shard holds a file descriptor (a reader that
        # kept 100,000 shards mapped ran out of them)
        self._max_open = max(1, max_open_shards)
        self._tail: dict[str, tuple[int, int]] = {}  # id -> (shard, record) in shards the index does not cover
        self._live: tuple[list[str], np.ndarray, np.ndarray] | None = None
        self._len: int | None = None
        try:
            numbers = range(self._covered, len(self._specs))
            if self.path is None and len(numbers) > 1:  # remote: shard indexes read OPEN_THREADS at a time
                with ThreadPoolExecutor(min(OPEN_THREADS, len(numbers))) as pool:
                    shards = list(pool.map(self._shard, numbers))
            else:
                shards = map(self._shard, numbers)
            for s, shard in zip(numbers, shards):
                for i, doc_id in enumerate(shard.ids):
                    self._tail[doc_id] = (s, i)
        except BaseException:
            self.close()
            raise

    def _shard(self, s: int) -> ShardFile:
        """Shard s of the manifest, opened on first use. At most max_open_shards are kept; the least
        recently used is forgotten, not closed (a payload view or another thread may still use it: it
        closes when the last reference goes). Safe to call from several threads."""
        if self._closed:
            raise StoreError(f"the reader of {self.location} is closed")
        with self._lock:
            shard = self._open.get(s)
            if shard is not None:
                self._open.move_to_end(s)
                return shard
        spec = self._specs[s]
        shard = idindex.shard_file(self.location, spec["name"], spec["bytes"], self.limits, self.shard_cache,
                                   spec.get("sha256"))
        with self._lock:
            shard = self._open.setdefault(s, shard)
            self._open.move_to_end(s)
            while len(self._open) > self._max_open:
                self._open.popitem(last=False)
        return shard

    # ---- what the cache is --------------------------------------------------------------------
    @property
    def layer(self):
        return self.meta.get("layer")

    @property
    def hidden_size(self) -> int:
        return self.meta["model"]["hidden_size"]

    @property
    def has_index(self) -> bool:
        """True when the reader looks ids up in the cache's id index."""
        return self._index is not None

    def check_compatible(self, expected_meta: dict, codec_config: dict | None = None) -> None:
        """Raise ManifestMismatchError unless every field given in expected_meta (nested dicts may
        be partial) equals the stored one, and the codec config too when given."""
        found = subset_mismatches(self.meta, expected_meta)
        if codec_config is not None and codec_config != self.manifest["codec"]:
            found.append(("codec", self.manifest["codec"], codec_config))
        if found:
            raise mismatch_error(self.location, found, "the caller expects")

    # ---- ids --------------------------------------------------------------------------------
    def _find(self, doc_id) -> tuple[int, int, idindex.IndexEntry | None] | None:
        """(shard, record, index entry or None) of the live record of doc_id, or None."""
        if not isinstance(doc_id, str):
            return None
        hit = self._tail.get(doc_id)
        if hit is not None:
            return hit[0], hit[1], None
        entry = self._index.lookup(doc_id) if self._index is not None else None
        return None if entry is None else (entry.shard, entry.record, entry)

    def _live_table(self) -> tuple[list[str], np.ndarray]:
        """(ids, LIVE rows) of every live record, in commit order then record order: from the id index
        for the shards it covers (no shard opened), from the shards' own indexes past it."""
        ids, rows = [], [np.zeros(0, LIVE)]
        for part_ids, entries in self._index or ():
            ids += part_ids
            rows.append(_live_rows(entries))
        table = np.concatenate(rows)
        if self._tail:  # ids replaced by a shard the index does not cover
            keep = np.array([d not in self._tail for d in ids], dtype=bool)
            ids, table = [d for d, k in zip(ids, keep.tolist()) if k], table[keep]
        order = np.lexsort((table["record"], table["shard"]))
        ids, tables = [ids[j] for j in order.tolist()], [table[order]]
        by_shard: dict[int, list[tuple[int, str]]] = {}
        for doc_id, (s, i) in self._tail.items():
            by_shard.setdefault(s, []).append((i, doc_id))
        for s in sorted(by_shard):
            got = sorted(by_shard[s])
            shard = self._shard(s)
            records = np.array([i for i, _ in got], dtype=np.int64)
            t = np.zeros(len(records), LIVE)
            t["shard"], t["record"] = s, records
            for name in ("tokens", "payload_len", "flags"):
                t[name] = shard.entries[name][records]
            t["length"] = shard.record_size()[records]
            if shard.hashes is not None:
                t["token_hash"] = shard.hashes[records]
            ids += [d for _, d in got]
            tables.append(t)
        return ids, np.concatenate(tables)

    def _live_order(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(ids, shard numbers, record numbers) of the live records: commit order, then record order."""
        if self._live is None:
            ids, table = self._live_table()
            self._live = (ids, table["shard"].astype(np.int64), table["record"].astype(np.int64))
            self._len = len(ids)
        return self._live

    def __len__(self) -> int:
        if self._len is None:
            if self._index is None:
                self._len = len(self._tail)
            else:  # the index's documents and the tail's ids it does not hold (no part read without a tail)
                self._len = self._index.documents + sum(self._index.lookup(d) is None for d in self._tail)
        return self._len

    def ids(self) -> list[str]:
        """Live document ids in order: shards in commit order, records in their order in a shard."""
        return list(self._live_order()[0])

    def __contains__(self, doc_id) -> bool:
        return self._find(doc_id) is not None

    def _locate(self, doc_id: str) -> tuple[int, int, idindex.IndexEntry | None]:
        found = self._find(doc_id)
        if found is None:
            raise MissingDocumentError(
                f"document {doc_id!r} is not in the cache {self.location} ({len(self)} documents): "
                f"encode it first, or check the id (`erpack inspect {self.location}`)"
            )
        if self._closed:
            raise StoreError(f"the reader of {self.location} is closed")
        return found

    def _direct(self, s: int, entry) -> bool:
        """Whether a record is read by one range request through the index (remote, shard not open)."""
        return entry is not None and self.path is None and self.shard_cache is None and s not in self._open

    def _read(self, doc_id: str, s: int, i: int, entry, data: bytes | None = None
              ) -> tuple[memoryview, tuple[int, int], object, np.ndarray | None]:
        """(payload, shape, what names the record in errors, token ids or None). A remote record the
        index locates, in a shard not open, is one range read (`data`: its bytes, fetched already);
        everything else goes through the shard."""
        if self._direct(s, entry):
            record = _IndexedRecord(self.location, self._specs[s]["name"], entry)
            payload, shape, _, ids = record.read(self.verify_checksums, self.limits, data)
            return payload, shape, record, ids
        shard = self._shard(s)
        if entry is not None and (i >= shard.count or shard.ids[i] != doc_id):
            raise StoreError(f"the id index of {self.location} places {doc_id!r} at record {i} of {shard.name}, "
                             f"which holds another id: the index is damaged; {idindex.REBUILD_HINT}")
        payload, shape, _, ids = shard.read_record(i, verify=self.verify_checksums)
        return payload, shape, shard, ids

    def info(self, doc_id: str) -> dict:
        """Where a document lives and what its record holds, without reading the record."""
        s, i, e = self._locate(doc_id)
        if e is not None:
            return {"shard": self._specs[s]["name"], "record_index": i, "offset": e.offset, "tokens": e.tokens,
                    "payload_bytes": e.payload_len, "truncated": bool(e.flags & FLAG_TRUNCATED)}
        entry = self._shard(s).entries[i]
        return {"shard": self._specs[s]["name"], "record_index": i, "offset": int(entry["offset"]),
                "tokens": int(entry["tokens"]), "payload_bytes": int(entry["payload_len"]),
                "truncated": bool(int(entry["flags"]) & FLAG_TRUNCATED)}

    def token_hash(self, doc_id: str) -> int | None:
        """The u64 hash of the token ids that made the document's record (erpack.tokens.token_hash),
        or None where unknown (a version-1 shard, or a writer that gave none)."""
        s, i, e = self._locate(doc_id)
        return e.token_hash if e is not None else self._shard(s).token_hash(i)

    # ---- records ------------------------------------------------------------------------------
    def get_encoded(self, doc_id: str) -> tuple[memoryview, tuple[int, int]]:
        """(encoded payload, (tokens, hidden)): a zero-copy view, valid while the reader is open."""
        payload, shape, _, _ = self._read(doc_id, *self._locate(doc_id))
        return payload, shape

    def get_tokens(self, doc_id: str) -> np.ndarray | None:
        """The token ids stored with the document's record (int64 (T,): the non-padding input ids of
        the document as encoded), or None where the record holds none (written before shard version 3,
        or by a caller that gave none). Reads (and checks) the record."""
        return self._read(doc_id, *self._locate(doc_id))[3]

    def get(self, doc_id: str) -> np.ndarray:
        """The document's activations, float32 (tokens, hidden)."""
        s, i, e = self._locate(doc_id)
        payload, shape, owner, ids = self._read(doc_id, s, i, e)
        return decode_payload(self.codec, owner, i, payload, shape, ids)

    def get_batch(self, doc_ids, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Several documents as one padded batch: hidden float32 (B, T, H), T the longest of them, zero
        past each document's length, and attention mask int64 (B, T), 1 on real tokens. Decoded by
        `Pipeline.decode_batch` (one dequantization for the batch where the codec allows); `out`, a
        (B, T, H) float32 array, is reused if given. A record that fails is named in the error."""
        doc_ids = list(doc_ids)
        located = [self._locate(d) for d in doc_ids]
        if not located:
            raise StoreError("get_batch needs at least one document id")
        fetched = self._fetch(located)
        reads = [self._read(d, *where, fetched.get(k)) for k, (d, where) in enumerate(zip(doc_ids, located))]
        shapes = [shape for _, shape, _, _ in reads]
        tokens = None
        if self.codec.needs_tokens:
            tokens = [ids for _, _, _, ids in reads]
            for (_, i, _), (_, _, owner, ids) in zip(located, reads):
                if ids is None:
                    raise missing_tokens(owner, i)
        try:
            hidden = self.codec.decode_batch([payload for payload, _, _, _ in reads], shapes, out, tokens=tokens)
        except CodecError:  # find the record and say which: decode_payload names shard, record and id
            for (_, i, _), (payload, shape, owner, ids) in zip(located, reads):
                decode_payload(self.codec, owner, i, payload, shape, ids)
            raise
        return hidden, mask_from_lengths([t for t, _ in shapes], hidden.shape[1])  # (B, T, H), (B, T)

    def _fetch(self, located: list) -> dict[int, bytes]:
        """{k: bytes} of the records read through the index among `located`, fetched concurrently."""
        direct = [(k, self._specs[s]["name"], e) for k, (s, _, e) in enumerate(located) if self._direct(s, e)]
        if len(direct) < 2:
            return {}
        got = self.location.read_ranges([n for _, n, _ in direct], [e.offset for _, _, e in direct],
                                        [e.offset + e.length for _, _, e in direct])
        return {k: data for (k, _, _), data in zip(direct, got) if data is not None}

    def _records(self) -> Iterator[tuple[str, ShardFile, int, memoryview, tuple[int, int], np.ndarray | None]]:
        """Every live record in order, shard by shard (a remote shard reads ahead as it goes), with
        its token ids (None where it holds none)."""
        ids, shards, records = self._live_order()
        for doc_id, s, i in zip(ids, shards.tolist(), records.tolist()):
            shard = self._shard(s)
            payload, shape, _, tokens = shard.read_record(i, verify=self.verify_checksums)
            yield doc_id, shard, i, payload, shape, tokens

    def iter_encoded(self) -> Iterator[tuple[str, memoryview, tuple[int, int]]]:
        for doc_id, _, _, payload, shape, _ in self._records():
            yield doc_id, payload, shape

    def iter_tokens(self) -> Iterator[tuple[str, np.ndarray | None]]:
        """(doc id, token ids or None) of every live record, in order, without decoding."""
        for doc_id, _, _, _, _, tokens in self._records():
            yield doc_id, tokens

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        for doc_id, shard, i, payload, shape, tokens in self._records():
            yield doc_id, decode_payload(self.codec, shard, i, payload, shape, tokens)

    def open_shard(self, s: int) -> ShardFile:
        """Shard s (its number in the manifest's list), opened (memory-mapped locally, read by ranges
        remotely); valid while the reader is open."""
        if not 0 <= s < len(self._specs):
            raise StoreError(f"{self.location} lists {len(self._specs)} shards: there is no shard {s}")
        return self._shard(s)

    def live_records(self) -> list[LiveRecords]:
        """Every listed shard (commit order) with its live records' ids, tokens, sizes, flags and token
        hashes: from the id index and the manifest where the index covers the shard (no shard is opened
        or read), from the shard's own index past it."""
        if self._closed:
            return []
        ids, table = self._live_table()
        bounds = np.searchsorted(table["shard"], np.arange(len(self._specs) + 1))
        out = []
        for s, spec in enumerate(self._specs):
            a, b = int(bounds[s]), int(bounds[s + 1])
            t = table[a:b]
            out.append(LiveRecords(
                name=spec["name"], count=spec["documents"], size=spec["bytes"], ids=ids[a:b],
                records=t["record"].astype(np.int64), tokens=t["tokens"].astype(np.int64),
                sizes=t["length"].astype(np.int64), payload_len=t["payload_len"].astype(np.int64),
                flags=t["flags"].copy(), token_hashes=t["token_hash"].copy()))
        return out

    def live_masks(self) -> list[tuple[LiveRecords, np.ndarray]]:
        """(shard's LiveRecords, bool mask over all its records: True where the record is the live one
        for its id), for every listed shard, without opening the shards the id index covers."""
        out = []
        for shard in self.live_records():
            live = np.zeros(shard.count, dtype=bool)
            live[shard.records] = True
            out.append((shard, live))
        return out

    # ---- whole-cache reports ------------------------------------------------------------------
    def verify(self, decode: bool = True) -> VerifyReport:
        """Check every shard's sha256 and every record's framing, crc32 and decoding, and the id index
        against the shards (see verify.py)."""
        return verify_cache(self.location, decode=decode, manifest=self.manifest, codec=self.codec)

    def stats(self) -> CacheStats:
        """What the cache holds and what it costs (see inspect.py); reads only the indexes."""
        return cache_stats(self)

    def close(self) -> None:
        with self._lock:
            shards = list(self._open.values())
            self._open.clear()
            self._closed = True
        for shard in shards:
            shard.close()

    def __enter__(self) -> CacheReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CacheReader({str(self.location)!r}, documents={len(self)}, codec={self.codec.spec!r})"
