"""The global id index: where every live document's record is, without opening any shard.

Opening a cache by its shard indexes costs one read per shard: 100,000 requests for a cache of 100
million documents on object storage. The id index answers "which shard, which record, which bytes"
for any id by reading ONE small file. It is written when a writer closes and listed in the
manifest's `id_index` field, which also seals it (the sha256 of every part):

    "id_index": {"version": 1, "shards": N, "documents": D,
                 "parts": [{"name": "index/ids-000000-000000.eri", "bytes", "sha256", "first", "last",
                            "documents"}, ...]}

`shards`: the index covers the manifest's shards[0:N]; shards committed later (a writer that died
before close) are read through their own indexes. `documents`: live ids in the index. Each live id
has one entry, keyed by `key = blake2b(id utf-8, digest_size=8)` read as a little-endian u64. The
entries are sorted by key and cut into parts of about PART_BYTES, a run of equal keys never split;
`first` and `last` are the smallest and largest key in a part, so a lookup bisects the manifest's
list, reads one part (checked against its sha256) and bisects the part.

A part file (all integers little-endian):

    header   32 bytes: magic "ERPKIDXP", version u16 (1), reserved u16 (0), count u32, blob_len u64,
             reserved u32 (0), crc32 u32 of header bytes 0..27
    entries  count x 64 bytes (ENTRY below), sorted by (key, shard, record)
    id blob  blob_len bytes: the ids, utf-8, concatenated; entry j's id ends at its id_end
    padding  zero bytes to a multiple of 8

An entry holds what reading and describing the record need without the shard's own index:
(shard number in the manifest, record index, record offset, length up to the next record or the
shard index, payload length, tokens, flags, the record's crc32, token hash). When a writer appends,
only the parts whose key range receives new ids are rewritten (under new names: readers holding the
previous manifest keep reading the previous parts); files of older generations are removed.
"""

from __future__ import annotations

import bisect
import hashlib
import re
import struct
import threading
import zlib
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np

from erpack.errors import StoreError
from erpack.store import format as fmt
from erpack.store.location import Location, open_location
from erpack.store.shard import ShardFile

FIELD = "id_index"
FIELD_VERSION = 1
INDEX_DIR = "index"
PART_MAGIC = b"ERPKIDXP"
PART_VERSION = 1
PART_HEADER = struct.Struct("<8sHHIQII")  # magic, version, reserved, count, blob_len, reserved, crc32
PART_BYTES = 2 << 20  # a part's target size; parts stay under 2 x this
READ_THREADS = 16  # remote shard indexes read at once when the index is written
PART_RE = re.compile(r"^index/ids-(\d{6})-(\d{6})\.eri$")
ENTRY = np.dtype(
    [("key", "<u8"), ("offset", "<u8"), ("length", "<u8"), ("payload_len", "<u8"), ("token_hash", "<u8"),
     ("shard", "<u4"), ("record", "<u4"), ("tokens", "<u4"), ("flags", "<u4"), ("crc32", "<u4"),
     ("id_end", "<u4")]
)  # 64 bytes
assert PART_HEADER.size == 32 and ENTRY.itemsize == 64
REBUILD_HINT = ("open it with CacheReader(..., use_index=False) to read through the shard indexes, and "
                "rebuild the index with erpack.store.writer.rebuild_index")


def id_keys(ids) -> np.ndarray:
    """The u64 key of each id: blake2b(utf-8, digest_size=8), little-endian."""
    digests = b"".join(hashlib.blake2b(i.encode("utf-8"), digest_size=8).digest() for i in ids)
    return np.frombuffer(digests, dtype="<u8").copy()


@dataclass(frozen=True)
class IndexEntry:
    """Where a live document's record is and what it holds (no record read)."""

    doc_id: str
    shard: int
    record: int
    offset: int
    length: int
    payload_len: int
    tokens: int
    flags: int
    crc32: int
    token_hash: int | None

    def as_dict(self) -> dict:
        return asdict(self)


def shard_file(location: Location, name: str, expected_size: int | None = None, limits=None, shard_cache=None,
               sha256: str | None = None) -> ShardFile:
    """ShardFile of a listed shard (the shard cache is used only with the manifest's sha256)."""
    return ShardFile(location, name, expected_size=expected_size, limits=limits, shard_cache=shard_cache,
                     sha256=sha256)


# ---- parts --------------------------------------------------------------------------------------
def pack_part(entries: np.ndarray, ids: list[str]) -> bytes:
    """The bytes of one part: entries sorted by (key, shard, record), ids in the same order."""
    blobs = [i.encode("utf-8") for i in ids]
    entries = entries.copy()
    entries["id_end"] = np.cumsum([len(b) for b in blobs], dtype=np.int64) if blobs else []
    blob = b"".join(blobs)
    if len(blob) >= 1 << 32:
        raise StoreError("one index part's ids exceed 4 GiB: use a smaller part size")
    head = PART_HEADER.pack(PART_MAGIC, PART_VERSION, 0, len(entries), len(blob), 0, 0)[:28]
    head += struct.pack("<I", zlib.crc32(head))
    body = head + entries.tobytes() + blob
    return body + b"\0" * fmt.padding(len(body))


class Part:
    """One part, read and checked: `entries` (ENTRY, sorted by key) and the ids."""

    def __init__(self, entries: np.ndarray, blob: bytes):
        self.entries = entries
        self.keys = entries["key"]
        self._blob = blob
        self._ends = entries["id_end"].astype(np.int64)

    def id(self, j: int) -> str:
        start = int(self._ends[j - 1]) if j else 0
        return self._blob[start : int(self._ends[j])].decode("utf-8")

    def ids(self) -> list[str]:
        starts = np.concatenate([[0], self._ends[:-1]]) if len(self._ends) else self._ends
        blob = self._blob
        return [blob[a:b].decode("utf-8") for a, b in zip(starts.tolist(), self._ends.tolist())]

    def find(self, key: int, doc_id: str) -> int | None:
        lo, hi = np.searchsorted(self.keys, np.uint64(key), "left"), np.searchsorted(self.keys, np.uint64(key), "right")
        for j in range(int(lo), int(hi)):
            if self.id(j) == doc_id:
                return j
        return None


def unpack_part(data: bytes, spec: dict, shards: int, where: str) -> Part:
    """Check one part's bytes against its manifest entry and its own framing; StoreError naming it."""
    def bad(what: str) -> StoreError:
        return StoreError(f"index part {where} {what}: the id index is damaged; {REBUILD_HINT}")

    if len(data) != spec["bytes"]:
        raise bad(f"is {len(data)} bytes but the manifest says {spec['bytes']}")
    if hashlib.sha256(data).hexdigest() != spec["sha256"]:
        raise bad("fails its sha256 (its bytes changed after it was written)")
    magic, version, _, count, blob_len, _, crc = PART_HEADER.unpack_from(data, 0)
    if magic != PART_MAGIC or zlib.crc32(data[:28]) != crc:
        raise bad("has no valid part header")
    if version != PART_VERSION:
        raise StoreError(f"index part {where} has version {version}; this erpack reads {PART_VERSION}: upgrade erpack")
    end = PART_HEADER.size + count * ENTRY.itemsize + blob_len
    if count != spec["documents"] or len(data) != end + fmt.padding(end) or any(data[end:]):
        raise bad(f"holds {count} entries in {len(data)} bytes, not the manifest's {spec['documents']}")
    entries = np.frombuffer(data, dtype=ENTRY, count=count, offset=PART_HEADER.size)
    keys, ends = entries["key"], entries["id_end"].astype(np.int64)
    if count and (
        int(keys[0]) != spec["first"] or int(keys[-1]) != spec["last"] or np.any(keys[1:] < keys[:-1])
        or np.any(np.diff(ends, prepend=0) < 1) or ends[-1] != blob_len or int(entries["shard"].max()) >= shards
    ):
        raise bad("is out of order or disagrees with the manifest (keys, ids or shard numbers)")
    return Part(entries, data[PART_HEADER.size + count * ENTRY.itemsize : end])


# ---- the index, read ----------------------------------------------------------------------------
class IdIndex:
    """The id index of one cache, parts loaded on demand (at most `cached_parts` kept)."""

    def __init__(self, location: Location, field: dict, cached_parts: int = 8):
        self.location = location
        self.field = field
        self.shards = field["shards"]
        self.documents = field["documents"]
        self.parts = field["parts"]
        self._firsts = [p["first"] for p in self.parts]
        self._cache: OrderedDict[int, Part] = OrderedDict()
        self._cached_parts = cached_parts
        self._lock = threading.Lock()  # the part cache is shared by threads reading through one reader

    @classmethod
    def open(cls, location, field: dict, storage_options: dict | None = None) -> IdIndex:
        return cls(open_location(location, storage_options), field)

    def __len__(self) -> int:
        return self.documents

    def part(self, k: int) -> Part:
        """Part k, read and verified (kept in a small LRU)."""
        with self._lock:
            if k in self._cache:
                self._cache.move_to_end(k)
                return self._cache[k]
        spec = self.parts[k]
        try:  # one ranged GET (no size request): one byte more than the manifest says shows a longer file
            data = self.location.read(spec["name"], 0, spec["bytes"] + 1)
        except FileNotFoundError:
            raise StoreError(
                f"index part {self.location / spec['name']} is listed in the manifest but missing: the cache was "
                f"rewritten since this reader opened it (open it again) or copied incompletely; {REBUILD_HINT}"
            ) from None
        part = unpack_part(data, spec, self.shards, self.location / spec["name"])
        with self._lock:
            self._cache[k] = part
            while len(self._cache) > self._cached_parts:
                self._cache.popitem(last=False)
        return part

    def _route(self, key: int) -> int | None:
        k = bisect.bisect_right(self._firsts, key) - 1
        if k < 0 or key > self.parts[k]["last"]:
            return None
        return k

    def lookup(self, doc_id: str) -> IndexEntry | None:
        """The entry of a live id, or None; reads at most one part."""
        if not isinstance(doc_id, str):
            return None
        key = int(id_keys([doc_id])[0])
        k = self._route(key)
        if k is None:
            return None
        part = self.part(k)
        j = part.find(key, doc_id)
        return None if j is None else _entry(doc_id, part.entries[j])

    def __iter__(self):
        """(ids, entries) of each part in key order."""
        for k in range(len(self.parts)):
            part = self.part(k)
            yield part.ids(), part.entries


def _entry(doc_id: str, e) -> IndexEntry:
    h = int(e["token_hash"])
    return IndexEntry(doc_id, int(e["shard"]), int(e["record"]), int(e["offset"]), int(e["length"]),
                      int(e["payload_len"]), int(e["tokens"]), int(e["flags"]), int(e["crc32"]),
                      None if h == fmt.NO_HASH else h)


# ---- the index, written -------------------------------------------------------------------------
def _one_shard(location: Location, shards: list, s: int) -> tuple[np.ndarray, list[str]]:
    """The entries and ids of every record of shards[s], from its shard index."""
    sf = shard_file(location, shards[s]["name"], expected_size=shards[s]["bytes"])
    try:
        e = np.zeros(sf.count, dtype=ENTRY)
        for name in ("offset", "payload_len", "tokens", "flags", "crc32"):
            e[name] = sf.entries[name]
        e["length"] = sf.record_size()
        e["shard"], e["record"] = s, np.arange(sf.count)
        if sf.hashes is not None:
            e["token_hash"] = sf.hashes
        return e, list(sf.ids)
    finally:
        sf.close()


def _shard_entries(location: Location, shards: list, start: int, stop: int | None = None
                   ) -> tuple[np.ndarray, list[str]]:
    """Entries of every record of shards[start:stop], the later record of an id winning. Remote
    shard indexes are read READ_THREADS at a time."""
    numbers = range(start, len(shards) if stop is None else stop)
    if location.is_local or len(numbers) < 2:
        rows = [_one_shard(location, shards, s) for s in numbers]
    else:
        with ThreadPoolExecutor(min(READ_THREADS, len(numbers))) as pool:
            rows = list(pool.map(lambda s: _one_shard(location, shards, s), numbers))
    chunks = [e for e, _ in rows]
    ids = [doc_id for _, shard_ids in rows for doc_id in shard_ids]
    entries = np.concatenate(chunks) if chunks else np.zeros(0, dtype=ENTRY)
    last = {doc_id: j for j, doc_id in enumerate(ids)}
    if len(last) != len(ids):  # replaced within the new shards: keep the newest
        keep = np.array(sorted(last.values()), dtype=np.int64)
        entries, ids = entries[keep], [ids[j] for j in keep.tolist()]
    entries["key"] = id_keys(ids)
    return entries, ids


def _sort(entries: np.ndarray, ids: list[str]) -> tuple[np.ndarray, list[str]]:
    order = np.lexsort((entries["record"], entries["shard"], entries["key"]))
    return entries[order], [ids[j] for j in order.tolist()]


class _PartWriter:
    def __init__(self, location: Location, generation: int, shards: int, part_bytes: int):
        self.location, self.generation, self.shards, self.part_bytes = location, generation, shards, part_bytes
        self.count = 0

    def write(self, entries: np.ndarray, ids: list[str]) -> list[dict]:
        """Sorted entries cut into parts of about part_bytes (equal keys kept together), written."""
        sizes = ENTRY.itemsize + np.fromiter((len(i.encode("utf-8")) for i in ids), np.int64, len(ids))
        cum = np.cumsum(sizes)
        out, start = [], 0
        while start < len(ids):
            base = int(cum[start - 1]) if start else 0
            end = max(int(np.searchsorted(cum, base + self.part_bytes, "right")), start + 1)
            keys = entries["key"]
            while end < len(ids) and keys[end] == keys[end - 1]:
                end += 1
            out.append(self._write_one(entries[start:end], ids[start:end]))
            start = end
        return out

    def _write_one(self, entries: np.ndarray, ids: list[str]) -> dict:
        data = pack_part(entries, ids)
        name = f"{INDEX_DIR}/ids-{self.generation:06d}-{self.count:06d}.eri"
        self.count += 1
        self.location.write_atomic(name, data)
        return {"name": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                "first": int(entries["key"][0]), "last": int(entries["key"][-1]), "documents": len(ids)}


def write_index(location, manifest: dict, part_bytes: int | None = None, storage_options: dict | None = None,
                rebuild: bool = False) -> dict:
    """Write the parts of an index covering every shard the manifest lists and return the new
    `id_index` field (the caller puts it in the manifest and writes the manifest). Reuses the
    manifest's old index: only shards past its coverage are read, only parts receiving ids rewritten.
    `rebuild`: ignore the old index and read every shard."""
    location = open_location(location, storage_options)
    shards = manifest["shards"]
    old = None if rebuild else manifest.get(FIELD)
    start = old["shards"] if old else 0
    if old and start == len(shards):
        return old
    new, new_ids = _shard_entries(location, shards, start)
    used = [int(PART_RE.match(p["name"]).group(1)) for p in (manifest.get(FIELD) or {}).get("parts", [])]
    if location.local is not None:
        location.child(INDEX_DIR).makedirs()
    writer = _PartWriter(location, max(used, default=-1) + 1, len(shards), part_bytes or PART_BYTES)
    if not old or not old["parts"]:
        parts = writer.write(*_sort(new, new_ids))
    else:
        index = IdIndex(location, old)
        route = np.clip(np.searchsorted(np.array(index._firsts, dtype=np.uint64), new["key"], "right") - 1, 0, None)
        parts = []
        for k, spec in enumerate(old["parts"]):
            mine = np.flatnonzero(route == k)
            if not len(mine):
                parts.append(spec)
                continue
            part = index.part(k)
            mine_ids = [new_ids[j] for j in mine.tolist()]
            replaced = set(mine_ids)
            old_ids = part.ids()
            keep = [j for j, d in enumerate(old_ids) if d not in replaced]
            merged = np.concatenate([part.entries[keep], new[mine]])
            parts += writer.write(*_sort(merged, [old_ids[j] for j in keep] + mine_ids))
    return {"version": FIELD_VERSION, "shards": len(shards), "documents": sum(p["documents"] for p in parts),
            "parts": parts}


def check_index(location, manifest: dict, storage_options: dict | None = None) -> list[tuple[str, str]]:
    """(file, problem) for each way the id index disagrees with the shards it covers: a part that is
    missing or damaged, or entries that differ from what the shard indexes say (every shard index
    it covers is read). [] when the index is right or absent."""
    field = manifest.get(FIELD)
    if not field:
        return []
    location = open_location(location, storage_options)
    index = IdIndex(location, field)
    got, got_ids = [], []
    try:
        for ids, entries in index:
            got.append(entries)
            got_ids += ids
    except StoreError as exc:
        return [(INDEX_DIR, str(exc))]
    want, want_ids = _sort(*_shard_entries(location, manifest["shards"], 0, field["shards"]))
    got_all = np.concatenate(got) if got else np.zeros(0, dtype=ENTRY)
    fields = [f for f in ENTRY.names if f != "id_end"]
    if got_ids != want_ids or not all(np.array_equal(got_all[f], want[f]) for f in fields):
        return [(INDEX_DIR, f"the id index ({len(got_ids)} entries) disagrees with the shard indexes "
                            f"({len(want_ids)} live records): {REBUILD_HINT}")]
    return []


def remove_stale_parts(location, keep: list[dict | None], storage_options: dict | None = None) -> list[str]:
    """Delete index part files named by none of the `keep` fields (the current and the previous
    manifest's): parts of older generations and leftovers of an interrupted write. Returns their names."""
    location = open_location(location, storage_options)
    named = {p["name"] for f in keep if f for p in f["parts"]}
    removed = []
    for name in location.child(INDEX_DIR).listdir():
        full = f"{INDEX_DIR}/{name}"
        if (PART_RE.match(full) or name.endswith(".tmp")) and full not in named:
            location.delete(full)
            removed.append(full)
    return removed


def check_field(field, shards: int) -> str | None:
    """Why a manifest's `id_index` field is malformed, or None."""
    def uint(v, top=1 << 64) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < top

    if not isinstance(field, dict) or field.get("version") != FIELD_VERSION:
        return f"is not a version-{FIELD_VERSION} id index ({str(field)[:80]})"
    if not uint(field.get("shards"), shards + 1) or not uint(field.get("documents")):
        return f"covers {field.get('shards')!r} shards of {shards} / {field.get('documents')!r} documents"
    parts = field.get("parts")
    if not isinstance(parts, list):
        return "has no list of parts"
    last, total = -1, 0
    for p in parts:
        if (not isinstance(p, dict) or not PART_RE.match(str(p.get("name"))) or not uint(p.get("bytes"))
                or not re.fullmatch(r"[0-9a-f]{64}", str(p.get("sha256"))) or not uint(p.get("first"))
                or not uint(p.get("last")) or not uint(p.get("documents")) or not last < p["first"] <= p["last"]):
            return f"has a malformed or out-of-order part {str(p)[:120]}"
        last, total = p["last"], total + p["documents"]
    if total != field["documents"]:
        return f"counts {field['documents']} documents but its parts hold {total}"
    return None

