"""CacheWriter and write_shard: add documents to a cache (a folder or a URL), one published shard at a time.

Commit protocol (docs/cache-format.md, "Atomic commit"): encode the records into a local temp file
(`shard-NNNNNN.ers.tmp` in a local cache folder, the temp folder for a remote cache), fsync it, and
publish it under its final name: a rename locally, an upload remotely (an object becomes visible whole
or not at all). Then replace manifest.json the same way, LAST. The manifest is the commit point: a
crash at any moment leaves the previous manifest and at most unlisted shards or `.tmp` files, which
the next writer removes when it opens the cache.

One writer per cache: locally an flock on the folder; remotely there is no lock, and one driver at a
time is the caller's job. Distributed writers (workers) call `write_shard` with names of their own
(`shard-<tag>-NNNNNN.ers`) and hand the returned entries to the one driver, whose CacheWriter lists
them all with `commit_entries` in one manifest write. Readers never lock and see the manifest they read.
"""

from __future__ import annotations

import copy
import logging
import operator
import os
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from erpack.codecs import Pipeline
from erpack.codecs.state import context_problem
from erpack.errors import StoreError
from erpack.store import codec_state, idindex
from erpack.store import format as fmt
from erpack.store.atomic import TMP_SUFFIX, FolderLock
from erpack.store.codec_state import STATE_RE
from erpack.store.format import FORMAT_VERSION
from erpack.store.location import Location, open_location
from erpack.store.manifest import (
    MANIFEST,
    SHARD_RE,
    check_meta,
    is_sealed,
    jsonable,
    load_manifest,
    mismatch_error,
    mismatches,
    new_manifest,
    shard_name,
    shard_number,
    stored_entry,
    write_manifest,
)
from erpack.store.shard import RecordLimits, ShardBuilder, ShardFile

log = logging.getLogger("erpack.store")

MODES = ("create", "append")
ON_DUPLICATE = ("error", "skip", "replace")
OPEN_THREADS = 16  # shard indexes a writer reads at once when it opens a remote cache
# Remote caches: a writer lists the folder for leftovers only when one of these says there may be
# some (a listing costs one request per 1,000 files). SESSION_MARK: written when a writer opens,
# removed when it closes normally (present: a writer died or left by an exception). PUBLISHED_MARK:
# written by write_shard before it publishes a shard no CacheWriter committed yet (a worker's).
SESSION_MARK = ".erpack-writer-open"
PUBLISHED_MARK = ".erpack-shards-published"
MARKS = (SESSION_MARK, PUBLISHED_MARK)


def _is_temp(name: str) -> bool:
    stem = name[: -len(TMP_SUFFIX)]
    return name.endswith(TMP_SUFFIX) and (stem == MANIFEST or bool(SHARD_RE.match(stem) or STATE_RE.match(stem)))


def _name_file(exc: BaseException, path) -> None:
    """Give an OSError raised while writing `path` its file name (a failed write() has none), so
    the message of a full disk or a file size limit says which file."""
    if isinstance(exc, OSError) and exc.filename is None:
        exc.filename = str(path)


def _hash_values(token_hashes: dict) -> dict[str, int]:
    """token_hashes as {id: int}, each a u64; else StoreError before writing."""
    out = {}
    for doc_id, h in token_hashes.items():
        try:
            out[doc_id] = operator.index(h)
        except TypeError:
            out[doc_id] = -1
        if not 0 <= out[doc_id] < 1 << 64:
            raise StoreError(f"document {doc_id!r}: token hash must be a u64 integer, got {h!r}")
    return out


def _check_hashes(token_hashes: dict, ids: set) -> dict[str, int]:
    """token_hashes as {id: int}, each a u64 of an id in this commit; else StoreError before writing."""
    unknown = set(token_hashes) - ids
    if unknown:
        raise StoreError(f"token_hashes names ids that are not in this commit: {sorted(unknown)[:5]}")
    return _hash_values(token_hashes)


def _check_token_ids(token_ids: dict) -> dict[str, np.ndarray]:
    """token_ids as {id: int64 (T,)}, each an integer array with 0 <= id < 2**32; else StoreError
    before writing (the length is checked against the record's T where the record is)."""
    out = {}
    for doc_id, ids in token_ids.items():
        try:
            a = np.asarray(ids)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise StoreError(f"document {doc_id!r}: token ids are not an array ({exc})") from None
        if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
            raise StoreError(f"document {doc_id!r}: token ids must be a 1-D integer array (the record's T input ids), "
                             f"got {a.dtype} {a.shape}")
        a = a.astype(np.int64)
        if a.size and (int(a.min()) < 0 or int(a.max()) >= 1 << 32):
            raise StoreError(f"document {doc_id!r}: token ids must lie in [0, 2**32), got {int(a.min())}..{int(a.max())}")
        out[doc_id] = a
    return out


def check_record(k: int, record, hidden_size: int, max_tokens: int | None) -> tuple[str, bytes, np.ndarray]:
    """(doc_id, its utf-8 bytes, float32 C-contiguous (T, H)) of the k-th record, or StoreError saying
    what is wrong with it."""
    try:
        doc_id, arr = record
    except (TypeError, ValueError):
        raise StoreError(f"record {k} must be a (doc_id, array) pair, got {type(record).__name__}") from None
    if not isinstance(doc_id, str) or not doc_id:
        raise StoreError(f"record {k}: document ids must be non-empty str, got {doc_id!r}")
    try:
        id_bytes = doc_id.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise StoreError(f"document id {doc_id!r} is not valid unicode ({exc})") from None
    try:
        a = np.asarray(arr)
    except (TypeError, ValueError, RuntimeError) as exc:  # e.g. a bfloat16 or CUDA tensor
        raise StoreError(f"document {doc_id!r}: activations are not a numpy-convertible array ({exc}); "
                         f"pass x.detach().float().cpu().numpy()") from None
    if a.dtype.kind != "f":
        raise StoreError(f"document {doc_id!r}: activations must be floats (float32), got dtype {a.dtype}")
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] != hidden_size:
        raise StoreError(
            f"document {doc_id!r}: activations must have shape (tokens >= 1, hidden={hidden_size}), "
            f"got {a.shape}: pass one document's non-padding tokens at the cached layer"
        )
    if max_tokens is not None and a.shape[0] > max_tokens:  # readers refuse such a record: never write one
        raise StoreError(
            f"document {doc_id!r}: {a.shape[0]} tokens, more than the cache's max_length {max_tokens}: truncate "
            f"the input at max_length (and flag it in `truncated`)"
        )
    return doc_id, id_bytes, np.ascontiguousarray(a, dtype=np.float32)


def write_shard(location, name: str, records, codec, limits: RecordLimits | None = None, truncated=(),
                token_hashes: dict | None = None, storage_options: dict | None = None, _mark: bool = True,
                token_ids: dict | None = None) -> dict:
    """Encode `records` (an iterable of (doc_id, float32 (T, H)), read once, one at a time) as one shard
    and publish it under `name` in `location` (a folder, URL or Location), whole or not at all: built in
    a local temp file (`NAME.tmp` beside it for a local folder, the temp folder for a remote one),
    fsynced, then renamed or uploaded. Nothing is listed in a manifest: a CacheWriter's commit_entries
    does that. An existing `name` is refused (a published shard is never overwritten).

    `limits`: the cache's RecordLimits (hidden size and max tokens; None: H from the first record, T
    unbounded). `truncated`: ids whose input was cut at max_length. `token_hashes`: id -> u64.
    `token_ids`: id -> int array (T,), the record's input ids, stored in it (a codec with needs_tokens
    gets them and requires them for every record). Returns
    the shard's manifest entry {name, documents, tokens, truncated, bytes, sha256} plus, in memory only,
    `ids`, `tokens_per_doc`, `flags` (per record, in order) and `hashes` ({id: u64} of those given)."""
    loc = open_location(location, storage_options)
    shard_number(name)  # a StoreError for a name that is not a shard's
    truncated = set(truncated)
    hashes = _hash_values(token_hashes or {})
    tokens_of = _check_token_ids(token_ids or {})
    needs = getattr(codec, "needs_tokens", False)
    if loc.exists(name):
        raise StoreError(f"{loc / name} exists already: a published shard is never overwritten; choose another "
                         f"name (a new tag or number), or delete it if no manifest lists it")
    if loc.is_local:
        loc.makedirs()
        tmp = loc.local / (name + TMP_SUFFIX)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    else:
        fd, tmp = tempfile.mkstemp(prefix=f"erpack-{name}-", suffix=TMP_SUFFIX)
        tmp = Path(tmp)
    ids, tokens, flags = [], [], []
    seen: set[str] = set()
    try:
        with open(fd, "wb") as f:
            builder = ShardBuilder(f)
            hidden = limits.hidden_size if limits is not None else None
            for k, record in enumerate(records):
                if hidden is None:  # no limits: the first record sets H
                    try:
                        hidden = int(np.shape(record[1])[-1])
                    except (TypeError, IndexError, KeyError, ValueError):
                        hidden = -1  # check_record says what is wrong with the record
                doc_id, id_bytes, arr = check_record(k, record, hidden, limits.max_tokens if limits else None)
                if doc_id in seen:
                    raise StoreError(f"document {doc_id!r} is given twice in shard {loc / name}: a shard holds each "
                                     f"id once")
                seen.add(doc_id)
                flag = fmt.FLAG_TRUNCATED if doc_id in truncated else 0
                ids_k = tokens_of.get(doc_id)
                if ids_k is not None and len(ids_k) != arr.shape[0]:
                    raise StoreError(f"document {doc_id!r}: {len(ids_k)} token ids for {arr.shape[0]} tokens of "
                                     f"activations: pass exactly the ids of the non-padding tokens the record holds")
                if needs and ids_k is None:
                    raise StoreError(f"document {doc_id!r}: codec {codec.spec if hasattr(codec, 'spec') else codec} "
                                     f"codes with each record's token ids, and none were given: pass token_ids")
                # arr: (T, H) float32
                blob = codec.encode(arr, tokens=ids_k) if needs else codec.encode(arr)
                payload = memoryview(blob).cast("B")
                flags.append(builder.add(id_bytes, payload, arr.shape[0], arr.shape[1], flag, hashes.get(doc_id), ids_k))
                ids.append(doc_id)
                tokens.append(int(arr.shape[0]))
            if not ids:
                raise StoreError(f"shard {loc / name} has no records: a shard holds at least one")
            for what, named in (("truncated", truncated), ("token_hashes", set(hashes)), ("token_ids", set(tokens_of))):
                if named - seen:
                    raise StoreError(f"{what} names ids that are not in shard {loc / name}: {sorted(named - seen)[:5]}")
            sha = builder.finish()
            f.flush()
            os.fsync(f.fileno())
        if _mark and not loc.is_local:  # the next writer to open lists the folder for uncommitted shards
            loc.write_atomic(PUBLISHED_MARK, b"shards were published here by write_shard\n")
        loc.upload(tmp, name)  # a durable rename locally; an upload visible only once whole remotely
    except BaseException as exc:
        _name_file(exc, tmp)
        raise
    finally:
        Path(tmp).unlink(missing_ok=True)
    return {"name": name, "documents": len(ids), "tokens": sum(tokens),
            "truncated": sum(f & fmt.FLAG_TRUNCATED for f in flags),
            "bytes": builder.size, "sha256": sha, "ids": ids, "tokens_per_doc": tokens, "flags": flags,
            "hashes": {d: hashes[d] for d in ids if d in hashes}}


class CacheWriter:
    """Writes one cache: `where` is a folder, a URL (s3://bucket/prefix, memory://..., file://...) or a
    Location; `storage_options` go to the fsspec file system of a URL. `mode`: "create" (missing or
    empty) or "append" (creates it when missing, else checks that meta and codec match the stored
    ones). `on_duplicate`: what an id already in the cache, or given twice in one commit, does:
    "error", "skip" (keep the old) or "replace" (the newest record wins; the old one stays in its
    shard, dead)."""

    def __init__(self, where, meta: dict, codec, mode: str = "create", on_duplicate: str = "error",
                 storage_options: dict | None = None, index: bool = True, use_index: bool = True):
        if mode not in MODES:
            raise StoreError(f"mode must be one of {MODES}, got {mode!r}")
        if on_duplicate not in ON_DUPLICATE:
            raise StoreError(f"on_duplicate must be one of {ON_DUPLICATE}, got {on_duplicate!r}")
        self.location: Location = open_location(where, storage_options)
        self.path: Path | None = self.location.local  # None for a remote cache
        self.codec = codec
        self.on_duplicate = on_duplicate
        self.removed: list[str] = []  # leftovers of an interrupted writer, removed on open
        self.index = index  # close() writes the id index (erpack/store/idindex.py)
        self.use_index = use_index  # opening takes the live ids from the id index when the cache has one
        self._docs: dict[str, tuple[int, int, int | None]] = {}  # live id -> (tokens, flags, token hash)
        self._lock = None
        self._open_flag = False
        self._marked = False  # a remote writer wrote SESSION_MARK
        self._failed = False  # left by an exception: the session mark stays
        meta = check_meta(meta)
        codec_config = jsonable(codec.get_config(), "codec.get_config()")
        self._check_state(meta)
        if self.path is not None:
            if self.path.exists() and not self.path.is_dir():
                raise StoreError(f"{self.path} is a file, not a cache folder: pass a folder path")
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock = FolderLock(self.path)
        # a remote folder needs no making (and s3fs would create a missing bucket: say it is missing)
        self._open_flag = True
        try:
            self._open(mode, meta, codec_config)
        except BaseException:
            self.close()
            raise
        self.limits = RecordLimits.from_meta(self._manifest["meta"])  # what readers accept
        self._max_tokens = self.limits.max_tokens
        self._opened = True  # close() writes the id index only for a writer that opened

    # ---- opening ------------------------------------------------------------------------------
    def _codec_name(self) -> str:
        return getattr(self.codec, "spec", None) or str(self.codec.get_config())

    def _check_state(self, meta: dict) -> None:
        """A fitted codec's state must have been fitted on this meta's model and layer."""
        state = getattr(self.codec, "state", None)
        if state is None:
            return
        problem = context_problem(state, meta)
        if problem:
            raise StoreError(f"the fitted state of codec {self._codec_name()} belongs to another model or layer than "
                             f"the cache {self.location} ({problem}): fit the codec on this model's activations at "
                             f"this layer (erpack.codecs.state.context_of(meta) is the context to fit with)")

    def _adopt_state(self, manifest: dict) -> None:
        """Appending: the writer's codec must carry the cache's fitted state (same sha256); a fitted
        codec given without a state takes the cache's."""
        field = manifest.get(codec_state.FIELD)
        state = getattr(self.codec, "state", None)
        if field is None:
            if state is not None:
                raise StoreError(f"{self.location} holds no fitted state, but the writer's codec {self._codec_name()} "
                                 f"carries one: a cache holds one fitted state; use a new cache folder")
            if getattr(self.codec, "fitted", False):
                codec_state.cache_codec(self.location, manifest)  # raises: the state is missing
            return
        if state is None:
            self.codec = codec_state.cache_codec(self.location, manifest)
        elif state.sha256 != field["sha256"]:
            raise StoreError(f"the writer's codec {self._codec_name()} carries a fitted state ({state.sha256[:16]}) "
                             f"other than the cache's {field['name']}: records coded with another state cannot share "
                             f"a cache; append with the cache's codec (pass it unfitted: the writer loads the cache's "
                             f"state), or write a new cache")

    def _open(self, mode: str, meta: dict, codec_config: dict) -> None:
        loc = self.location
        if not loc.exists(MANIFEST):
            others = [n for n in loc.listdir() if not _is_temp(n) and n not in MARKS and not STATE_RE.match(n)]
            if self.path is not None:  # sub-folders count locally (a remote listing has files only)
                others = sorted(p.name for p in self.path.iterdir() if not _is_temp(p.name) and not STATE_RE.match(p.name))
            if others:
                shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
                raise StoreError(
                    f"{loc} is not empty ({shown}) and has no {MANIFEST}, so it is not an erpack "
                    f"cache: write the cache to a new or empty folder"
                )
            return self._start(meta, codec_config)
        manifest = load_manifest(loc)
        if mode == "create" and not manifest["shards"]:  # created but nothing committed: start over
            return self._start(meta, codec_config)
        if mode == "create":
            raise StoreError(
                f"{loc} already holds an erpack cache ({manifest['counts'].get('documents')} "
                f"documents): open it with mode='append' to add documents, or use a new folder"
            )
        found = mismatches(manifest["meta"], meta)
        if manifest["codec"] != codec_config:
            found.append(("codec", manifest["codec"], codec_config))
        if found:
            raise mismatch_error(loc, found, "this writer asks for")
        self._adopt_state(manifest)
        self._manifest = manifest
        self._load_ids()
        if loc.is_local or any(loc.exists(m) for m in MARKS):  # remote: list only if a mark says so
            self._remove_leftovers({s["name"] for s in manifest["shards"]}
                                   | {manifest.get(codec_state.FIELD, {}).get("name")})
        self._mark_session()
        self._number_after()

    def _mark_session(self) -> None:
        """Remote: say a writer is open (removed by a normal close), so that leftovers of a writer
        that dies are found by the next one."""
        if not self.location.is_local:
            self.location.write_atomic(SESSION_MARK, b"a CacheWriter is open (or died) here\n")
            self._marked = True

    def _start(self, meta: dict, codec_config: dict) -> None:
        self._manifest = new_manifest(meta, codec_config)
        self._remove_leftovers(set())
        self._mark_session()  # before the state file: a crash before the manifest leaves a mark
        if getattr(self.codec, "fitted", False):
            state = self.codec.state
            if state is None:
                raise StoreError(f"codec {self._codec_name()} is fitted on data and has no fitted state: fit it on a "
                                 f"sample first (codec.fit(records, context=context_of(meta)))")
            # published before the manifest that names it: a reader never sees a manifest without its state
            self._manifest[codec_state.FIELD] = codec_state.write_state(self.location, state)
        write_manifest(self.location, self._manifest)
        self._next = 0

    def _number_after(self) -> None:
        """The next single-writer shard number: one more than the highest untagged one listed."""
        numbers = [n for tag, n in map(shard_number, (s["name"] for s in self._manifest["shards"])) if tag is None]
        self._next = max(numbers, default=-1) + 1

    def _shard_rows(self, entry: dict) -> list[tuple[str, int, int, int | None]]:
        """(id, tokens, flags, token hash) of every record of a listed shard, from its index."""
        shard = ShardFile(self.location, entry["name"], expected_size=entry["bytes"])
        try:
            tokens, flags = shard.entries["tokens"].tolist(), shard.entries["flags"].tolist()
            return [(d, t, f, shard.token_hash(i)) for i, (d, t, f) in enumerate(zip(shard.ids, tokens, flags))]
        finally:
            shard.close()

    def _index_rows(self, field: dict):
        """(ids, tokens, flags, token hashes) of each part of the id index, in part order (remote parts
        are fetched OPEN_THREADS at a time; each is checked against its sha256)."""
        index = idindex.IdIndex(self.location, field, cached_parts=0)

        def rows(k: int):
            part = index.part(k)
            e = part.entries
            return part.ids(), e["tokens"].tolist(), e["flags"].tolist(), e["token_hash"].tolist()

        numbers = range(len(field["parts"]))
        if self.location.is_local or len(numbers) < 2:
            yield from map(rows, numbers)
            return
        with ThreadPoolExecutor(min(OPEN_THREADS, len(numbers))) as pool:
            yield from pool.map(rows, numbers)

    def _load_ids(self) -> None:
        """Every live id with its (tokens, flags, token hash), and the manifest's counts recomputed: from
        the id index where it covers the shards (no shard read), from the shard indexes past it."""
        counts = {"documents": 0, "tokens": 0, "truncated": 0, "records": 0, "bytes": 0}
        shards = self._manifest["shards"]
        field = self._manifest.get(idindex.FIELD) if self.use_index else None
        covered = field["shards"] if field else 0
        if field:
            no_hash = fmt.NO_HASH
            for ids, tokens, flags, hashes in self._index_rows(field):
                for doc_id, t, f, h in zip(ids, tokens, flags, hashes):
                    self._docs[doc_id] = (t, f, None if h == no_hash else h)
        tail = shards[covered:]
        if self.location.is_local or len(tail) < 2:
            rows = map(self._shard_rows, tail)
        else:  # remote: a few range reads per shard, many shards at once
            pool = ThreadPoolExecutor(OPEN_THREADS)
            rows = pool.map(self._shard_rows, tail)
        try:
            for shard_rows in rows:  # later shards replace: the newest record of an id is live
                for doc_id, t, f, h in shard_rows:
                    self._docs[doc_id] = (t, f, h)
        finally:
            if not isinstance(rows, map):
                pool.shutdown(cancel_futures=True)
        for entry in shards:  # a shard's entry counts its records, live or not
            counts["records"] += entry["documents"]
            counts["bytes"] += entry["bytes"]
        for t, f, _ in self._docs.values():
            counts["documents"] += 1
            counts["tokens"] += t
            counts["truncated"] += f & fmt.FLAG_TRUNCATED
        self._manifest["counts"] = counts

    def _remove_leftovers(self, listed: set[str]) -> None:
        """Delete unlisted shards and .tmp files: what an interrupted writer (or worker) left. Remotely
        there is no lock: this assumes no other writer is publishing shards into this cache now. A
        remote cache is listed only when a mark (MARKS) says a writer died or write_shard published."""
        names = self.location.listdir()
        for name in names:
            if name in MARKS:
                self.location.delete(name)
            elif _is_temp(name) or ((SHARD_RE.match(name) or STATE_RE.match(name)) and name not in listed):
                self.location.delete(name)
                self.removed.append(name)
        if self.removed:
            log.warning(
                "%s: removed %d leftover file(s) of an interrupted write: %s",
                self.location, len(self.removed), ", ".join(self.removed),
            )

    # ---- queries ------------------------------------------------------------------------------
    def contains(self, doc_id: str) -> bool:
        return doc_id in self._docs

    __contains__ = contains

    def ids(self) -> list[str]:
        """The ids the cache holds (its live records), in commit order."""
        return list(self._docs)

    def __len__(self) -> int:
        return len(self._docs)

    def token_hash(self, doc_id: str) -> int | None:
        """The token hash stored with the live record of doc_id; None when the record has none (a
        version-1 shard, or a caller that gave none). KeyError if the id is not in the cache."""
        return self._docs[doc_id][2]

    @property
    def manifest(self) -> dict:
        return copy.deepcopy(self._manifest)

    @property
    def hidden_size(self) -> int:
        return self._manifest["meta"]["model"]["hidden_size"]

    # ---- committing ---------------------------------------------------------------------------
    def _check_open(self) -> None:
        if not self._open_flag:
            raise StoreError(f"the writer of {self.location} is closed: open a new CacheWriter")

    def _check_record(self, k: int, record) -> tuple[str, bytes, np.ndarray]:
        return check_record(k, record, self.hidden_size, self._max_tokens)

    def _plan(self, checked: list) -> tuple[list, int, int]:
        """Apply on_duplicate. Returns (records to write, skipped, replaced)."""
        ids = [c[0] for c in checked]
        in_cache = [i for i in dict.fromkeys(ids) if i in self._docs]
        twice = [i for i, n in Counter(ids).items() if n > 1]
        if self.on_duplicate == "error" and (in_cache or twice):
            dup = (in_cache or twice)[:5]
            where = "already in the cache" if in_cache else "given twice in this commit"
            raise StoreError(
                f"{len(in_cache) + len(twice)} duplicate document id(s), e.g. {dup} ({where}); nothing "
                f"was written. Pass on_duplicate='skip' to keep the stored records or 'replace' to "
                f"overwrite them"
            )
        if self.on_duplicate == "skip":
            first = {}
            for c in checked:
                if c[0] not in self._docs:
                    first.setdefault(c[0], c)
            keep = list(first.values())
            return keep, len(checked) - len(keep), 0
        last = {c[0]: k for k, c in enumerate(checked)}
        keep = [c for k, c in enumerate(checked) if last[c[0]] == k]
        return keep, len(checked) - len(keep), len(in_cache)

    def commit_shard(self, records, truncated=(), token_hashes: dict | None = None,
                     token_ids: dict | None = None) -> dict:
        """Write `records` (an iterable of (doc_id, float array (tokens, hidden))) as one shard and
        commit it. `truncated`: ids among them whose input was cut at max_length (counted in the
        manifest, flagged per record). `token_hashes`: id -> u64 hash of the token ids that made the
        record (erpack.tokens.token_hash), stored in the shard index; ids left out store none.
        `token_ids`: id -> int array (T,), the record's non-padding input ids, stored in the record
        (u16 where every id < 65536, else u32; ids left out store none; a codec with needs_tokens
        requires them for every record).
        Returns {shard, documents, skipped, replaced, tokens, bytes}; shard is None when every
        record was skipped (nothing is written then)."""
        self._check_open()
        checked = [self._check_record(k, r) for k, r in enumerate(records)]
        truncated = set(truncated)
        unknown = truncated - {c[0] for c in checked}
        if unknown:
            raise StoreError(f"truncated names ids that are not in this commit: {sorted(unknown)[:5]}")
        hashes = _check_hashes(token_hashes or {}, {c[0] for c in checked})
        tokens_of = _check_token_ids(token_ids or {})
        unknown = set(tokens_of) - {c[0] for c in checked}
        if unknown:
            raise StoreError(f"token_ids names ids that are not in this commit: {sorted(unknown)[:5]}")
        for doc_id, _, arr in checked:
            if doc_id in tokens_of and len(tokens_of[doc_id]) != arr.shape[0]:
                raise StoreError(f"document {doc_id!r}: {len(tokens_of[doc_id])} token ids for {arr.shape[0]} tokens of "
                                 f"activations: pass exactly the ids of the non-padding tokens the record holds; "
                                 f"nothing was written")
            if doc_id not in tokens_of and getattr(self.codec, "needs_tokens", False):
                raise StoreError(f"document {doc_id!r}: the codec {self._codec_name()} codes with each record's "
                                 f"token ids and none were given for it: pass token_ids; nothing was written")
        keep, skipped, replaced = self._plan(checked)
        info = {"shard": None, "documents": len(keep), "skipped": skipped, "replaced": replaced,
                "tokens": sum(c[2].shape[0] for c in keep), "bytes": 0}
        if not keep:
            return info
        name = shard_name(self._next)
        kept = {c[0] for c in keep}
        entry = write_shard(self.location, name, [(c[0], c[2]) for c in keep], self.codec, self.limits,
                            truncated=truncated & kept, token_hashes={d: h for d, h in hashes.items() if d in kept},
                            _mark=False, token_ids={d: v for d, v in tokens_of.items() if d in kept})  # a crash before the commit leaves this writer's SESSION_MARK
        try:
            self._commit([entry])
        except BaseException as exc:
            self.location.delete(name)  # never listed: garbage either way
            _name_file(exc, self.location / MANIFEST)
            raise
        return {**info, "shard": name, "bytes": entry["bytes"]}

    def commit_entries(self, entries: list[dict]) -> dict:
        """List shards that write_shard already published (e.g. by workers, as shard-<tag>-NNNNNN.ers)
        in the manifest, in the order given, with ONE manifest write: all of them or none. Each must
        exist with its entry's size. Ids come from the entries' in-memory `ids`, `tokens_per_doc`,
        `flags` and `hashes` (or, where an entry lacks them, from the shard's index).

        A published shard cannot be un-written, so an id already in the cache or in two entries is
        allowed only with on_duplicate="replace" (the last one wins); with "error" or "skip" it raises
        StoreError and nothing is committed (the next writer to open the cache removes the unlisted
        shards). Returns {shards, documents, replaced, tokens, bytes}."""
        self._check_open()
        entries = [self._check_entry(k, e) for k, e in enumerate(entries)]
        if not entries:
            return {"shards": 0, "documents": 0, "replaced": 0, "tokens": 0, "bytes": 0}
        names = [e["name"] for e in entries]
        listed = {s["name"] for s in self._manifest["shards"]}
        again = [n for n, c in Counter(names).items() if c > 1] + [n for n in names if n in listed]
        if again:
            raise StoreError(f"{self.location}: shard(s) {again[:5]} are given twice or already listed in the "
                             f"manifest: each published shard is committed once; nothing was committed")
        self._check_published(entries)
        if self.on_duplicate != "replace":
            seen: set[str] = set()
            dup = []
            for e in entries:
                dup += [d for d in e["ids"] if d in self._docs or d in seen]
                seen.update(e["ids"])
            if dup:
                raise StoreError(
                    f"{self.location}: {len(dup)} document id(s) of these shards are already in the cache or in "
                    f"another of them, e.g. {dup[:5]}; a published shard cannot be un-written, so nothing was "
                    f"committed (with on_duplicate={self.on_duplicate!r}). Send only ids the cache lacks to the "
                    f"writers, or open the writer with on_duplicate='replace'"
                )
        replaced = self._commit(entries)
        return {"shards": len(entries), "documents": sum(e["documents"] for e in entries), "replaced": replaced,
                "tokens": sum(e["tokens"] for e in entries), "bytes": sum(e["bytes"] for e in entries)}

    def _check_entry(self, k: int, entry) -> dict:
        """A copy of a shard entry, checked, with its in-memory ids (read from the shard's index where
        the entry lacks them)."""
        if not isinstance(entry, dict):
            raise StoreError(f"entry {k} must be a dict returned by write_shard, got {type(entry).__name__}")
        name = entry.get("name")
        if not isinstance(name, str) or not SHARD_RE.match(name):
            raise StoreError(f"entry {k}: {name!r} is not a shard name (shard-NNNNNN.ers or shard-<tag>-NNNNNN.ers)")
        for key in ("documents", "tokens", "truncated", "bytes"):
            value = entry.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise StoreError(f"entry {k} ({name}): {key} must be an int >= 0, got {value!r}")
        sha = entry.get("sha256")
        if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise StoreError(f"entry {k} ({name}): sha256 must be 64 lowercase hex digits, got {sha!r}")
        out = stored_entry(entry)
        if all(isinstance(entry.get(key), list) for key in ("ids", "tokens_per_doc", "flags")):
            out["ids"], out["tokens_per_doc"], out["flags"] = entry["ids"], entry["tokens_per_doc"], entry["flags"]
            out["hashes"] = dict(entry.get("hashes") or {})
        else:
            rows = self._shard_rows(entry)
            out["ids"], out["tokens_per_doc"], out["flags"] = ([r[i] for r in rows] for i in range(3))
            out["hashes"] = {r[0]: r[3] for r in rows if r[3] is not None}
        n = len(out["ids"])
        if (len(out["tokens_per_doc"]), len(out["flags"]), sum(out["tokens_per_doc"]),
                sum(f & fmt.FLAG_TRUNCATED for f in out["flags"])) != (n, n, out["tokens"], out["truncated"]) \
                or n != out["documents"] or n == 0 or len(set(out["ids"])) != n:
            raise StoreError(f"entry {k} ({name}): its ids, tokens_per_doc and flags disagree with its counts "
                             f"(documents={out['documents']}, tokens={out['tokens']}); pass the dict write_shard "
                             f"returned, unchanged")
        return out

    def _check_published(self, entries: list[dict]) -> None:
        """Every entry's shard exists with its size (remote: the sizes are asked for at once)."""
        def size(name: str) -> int | None:
            try:
                return self.location.size(name)
            except FileNotFoundError:
                return None

        names = [e["name"] for e in entries]
        if self.location.is_local or len(names) < 2:
            sizes = list(map(size, names))
        else:
            with ThreadPoolExecutor(min(OPEN_THREADS, len(names))) as pool:
                sizes = list(pool.map(size, names))
        for e, got in zip(entries, sizes):
            if got != e["bytes"]:
                what = "is missing" if got is None else f"is {got} bytes, its entry says {e['bytes']}"
                raise StoreError(f"shard {self.location / e['name']} {what}: commit only shards that write_shard "
                                 f"published, with the entry it returned; nothing was committed")

    def _commit(self, entries: list[dict]) -> int:
        """Append the entries to the manifest (counts updated, newest record of an id live) and write it,
        the commit point. Returns how many live records the entries replaced."""
        manifest = copy.deepcopy(self._manifest)
        counts = manifest["counts"]
        new: dict[str, tuple[int, int, int | None]] = {}
        replaced = 0
        for e in entries:
            for doc_id, tokens, flags in zip(e["ids"], e["tokens_per_doc"], e["flags"]):
                old = new.get(doc_id) or self._docs.get(doc_id)
                if old is not None:  # replaced: the old record becomes dead
                    replaced += 1
                    counts["documents"] -= 1
                    counts["tokens"] -= old[0]
                    counts["truncated"] -= old[1] & fmt.FLAG_TRUNCATED
                new[doc_id] = (tokens, flags, e["hashes"].get(doc_id))
                counts["documents"] += 1
                counts["tokens"] += tokens
                counts["truncated"] += flags & fmt.FLAG_TRUNCATED
            counts["records"] += e["documents"]
            counts["bytes"] += e["bytes"]
            manifest["shards"].append(stored_entry(e))
        if is_sealed(manifest):  # lists this erpack's shards now: an older erpack must refuse, not misread
            manifest["format_version"] = FORMAT_VERSION  # (a version-1 cache stays 1 until `verify --seal`)
        write_manifest(self.location, manifest)
        self._manifest = manifest
        self._docs.update(new)
        self._number_after()
        return replaced

    # ---- closing ------------------------------------------------------------------------------
    def close(self, write_index: bool = True) -> None:
        """Write the id index covering every committed shard (unless index=False or write_index=False),
        then unlock. Leaving a `with` block by an exception writes no index (the committed shards stay;
        readers read the ones the index does not cover through their own indexes)."""
        opened, self._open_flag = self._open_flag and getattr(self, "_opened", False), False
        try:
            if opened and write_index and self.index and self._manifest["shards"]:
                self._write_index()
            if opened and self._marked and not self._failed:  # a normal end: nothing left behind
                self.location.delete(SESSION_MARK)
                self._marked = False
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def _write_index(self, rebuild: bool = False) -> None:
        """The id index (erpack/store/idindex.py) in the manifest, resealed; older parts removed."""
        old = self._manifest.get(idindex.FIELD)
        field = idindex.write_index(self.location, self._manifest, rebuild=rebuild)
        if field == old:
            return
        manifest = {**self._manifest, idindex.FIELD: field}
        write_manifest(self.location, manifest)
        self._manifest = manifest
        idindex.remove_stale_parts(self.location, [old, field])

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self._failed = self._failed or exc_type is not None  # the next writer lists for leftovers
        self.close(write_index=exc_type is None)


def rebuild_index(where, storage_options: dict | None = None) -> dict:
    """Write the cache's id index anew from its shards (after a part was damaged or lost), under the
    writer lock; returns the new `id_index` field."""
    manifest = load_manifest(where, storage_options)
    codec = Pipeline.from_config(manifest["codec"])  # fitted: the writer loads the cache's state
    with CacheWriter(where, meta=manifest["meta"], codec=codec, mode="append", storage_options=storage_options,
                     use_index=False) as w:
        w._write_index(rebuild=True)
        return w.manifest[idindex.FIELD]
