"""CacheWriter: add documents to a cache, one atomically committed shard at a time.

Commit protocol (docs/cache-format.md, "Atomic commit"): encode the records into
`shard-NNNNNN.ers.tmp`, fsync, rename to `shard-NNNNNN.ers`, fsync the folder, then replace
manifest.json the same way, LAST. The manifest is the commit point: a crash at any moment leaves
the previous manifest and at most one unlisted shard or `.tmp` file, which the next writer removes.
One writer per folder (an flock on the folder); readers never lock and see the manifest they read.
"""

from __future__ import annotations

import copy
import logging
import operator
import os
from collections import Counter
from pathlib import Path

import numpy as np

from erpack.errors import StoreError
from erpack.store import format as fmt
from erpack.store import idindex
from erpack.store.atomic import TMP_SUFFIX, FolderLock, publish, tmp_path, write_atomic
from erpack.store.manifest import (
    MANIFEST,
    SHARD_RE,
    check_meta,
    dump_manifest,
    jsonable,
    load_manifest,
    mismatch_error,
    mismatches,
    new_manifest,
    shard_name,
)
from erpack.store.shard import RecordLimits, ShardBuilder, ShardFile

log = logging.getLogger("erpack.store")

MODES = ("create", "append")
ON_DUPLICATE = ("error", "skip", "replace")


def _is_temp(name: str) -> bool:
    return name.endswith(TMP_SUFFIX) and (name == MANIFEST + TMP_SUFFIX or bool(SHARD_RE.match(name[: -len(TMP_SUFFIX)])))


def _name_file(exc: BaseException, path: Path) -> None:
    """Give an OSError raised while writing `path` its file name (a failed write() has none), so
    the message of a full disk or a file size limit says which file."""
    if isinstance(exc, OSError) and exc.filename is None:
        exc.filename = str(path)


def _check_hashes(token_hashes: dict, ids: set) -> dict[str, int]:
    """token_hashes as {id: int}, each a u64 of an id in this commit; else StoreError before writing."""
    unknown = set(token_hashes) - ids
    if unknown:
        raise StoreError(f"token_hashes names ids that are not in this commit: {sorted(unknown)[:5]}")
    out = {}
    for doc_id, h in token_hashes.items():
        try:
            out[doc_id] = operator.index(h)
        except TypeError:
            out[doc_id] = -1
        if not 0 <= out[doc_id] < 1 << 64:
            raise StoreError(f"document {doc_id!r}: token hash must be a u64 integer, got {h!r}")
    return out


class CacheWriter:
    """Writes one cache folder. `mode`: "create" (folder missing or empty) or "append" (creates it
    when missing, else checks that meta and codec match the stored ones). `on_duplicate`: what an id
    already in the cache, or given twice in one commit, does: "error", "skip" (keep the old) or
    "replace" (the newest record wins; the old one stays in its shard, dead)."""

    def __init__(self, path, meta: dict, codec, mode: str = "create", on_duplicate: str = "error",
                 index: bool = True):
        if mode not in MODES:
            raise StoreError(f"mode must be one of {MODES}, got {mode!r}")
        if on_duplicate not in ON_DUPLICATE:
            raise StoreError(f"on_duplicate must be one of {ON_DUPLICATE}, got {on_duplicate!r}")
        self.path = Path(path)
        self.codec = codec
        self.on_duplicate = on_duplicate
        self.removed: list[str] = []  # leftovers of an interrupted writer, removed on open
        self.index = index  # close() writes the id index (erpack/store/idindex.py)
        self._docs: dict[str, tuple[int, int, int | None]] = {}  # live id -> (tokens, flags, token hash)
        self._lock = None
        meta = check_meta(meta)
        codec_config = jsonable(codec.get_config(), "codec.get_config()")
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"{self.path} is a file, not a cache folder: pass a folder path")
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = FolderLock(self.path)
        try:
            self._open(mode, meta, codec_config)
        except BaseException:
            self.close()
            raise
        self._max_tokens = RecordLimits.from_meta(self._manifest["meta"]).max_tokens  # what readers accept

    # ---- opening ------------------------------------------------------------------------------
    def _open(self, mode: str, meta: dict, codec_config: dict) -> None:
        if not (self.path / MANIFEST).exists():
            others = sorted(p.name for p in self.path.iterdir() if not _is_temp(p.name))
            if others:
                shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
                raise StoreError(
                    f"{self.path} is not empty ({shown}) and has no {MANIFEST}, so it is not an erpack "
                    f"cache: write the cache to a new or empty folder"
                )
            return self._start(meta, codec_config)
        manifest = load_manifest(self.path)
        if mode == "create" and not manifest["shards"]:  # created but nothing committed: start over
            return self._start(meta, codec_config)
        if mode == "create":
            raise StoreError(
                f"{self.path} already holds an erpack cache ({manifest['counts'].get('documents')} "
                f"documents): open it with mode='append' to add documents, or use a new folder"
            )
        found = mismatches(manifest["meta"], meta)
        if manifest["codec"] != codec_config:
            found.append(("codec", manifest["codec"], codec_config))
        if found:
            raise mismatch_error(self.path, found, "this writer asks for")
        self._manifest = manifest
        self._load_ids()
        listed = {s["name"] for s in manifest["shards"]}
        self._remove_leftovers(listed)
        numbers = [int(SHARD_RE.match(n).group(1)) for n in listed]
        self._next = max(numbers, default=-1) + 1

    def _start(self, meta: dict, codec_config: dict) -> None:
        self._manifest = new_manifest(meta, codec_config)
        self._remove_leftovers(set())
        write_atomic(self.path / MANIFEST, dump_manifest(self._manifest))
        self._next = 0

    def _load_ids(self) -> None:
        counts = {"documents": 0, "tokens": 0, "truncated": 0, "records": 0, "bytes": 0}
        for entry in self._manifest["shards"]:
            shard = ShardFile(self.path / entry["name"], expected_size=entry["bytes"])
            try:
                tokens, flags = shard.entries["tokens"].tolist(), shard.entries["flags"].tolist()
                for i, (doc_id, t, f) in enumerate(zip(shard.ids, tokens, flags)):
                    self._docs[doc_id] = (t, f, shard.token_hash(i))
                counts["records"] += shard.count
                counts["bytes"] += shard.size
            finally:
                shard.close()
        for t, f, _ in self._docs.values():
            counts["documents"] += 1
            counts["tokens"] += t
            counts["truncated"] += f & fmt.FLAG_TRUNCATED
        self._manifest["counts"] = counts

    def _remove_leftovers(self, listed: set[str]) -> None:
        for p in sorted(self.path.iterdir()):
            if _is_temp(p.name) or (SHARD_RE.match(p.name) and p.name not in listed):
                p.unlink()
                self.removed.append(p.name)
        if self.removed:
            log.warning(
                "%s: removed %d leftover file(s) of an interrupted write: %s",
                self.path, len(self.removed), ", ".join(self.removed),
            )

    # ---- queries ------------------------------------------------------------------------------
    def contains(self, doc_id: str) -> bool:
        return doc_id in self._docs

    __contains__ = contains

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
    def _check_record(self, k: int, record) -> tuple[str, bytes, np.ndarray]:
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
        if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] != self.hidden_size:
            raise StoreError(
                f"document {doc_id!r}: activations must have shape (tokens >= 1, hidden={self.hidden_size}), "
                f"got {a.shape}: pass one document's non-padding tokens at the cached layer"
            )
        limit = self._max_tokens
        if limit is not None and a.shape[0] > limit:  # readers refuse such a record: never write one
            raise StoreError(
                f"document {doc_id!r}: {a.shape[0]} tokens, more than the cache's max_length {limit}: truncate "
                f"the input at max_length (and flag it in `truncated`)"
            )
        return doc_id, id_bytes, np.ascontiguousarray(a, dtype=np.float32)

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

    def commit_shard(self, records, truncated=(), token_hashes: dict | None = None) -> dict:
        """Write `records` (an iterable of (doc_id, float array (tokens, hidden))) as one shard and
        commit it. `truncated`: ids among them whose input was cut at max_length (counted in the
        manifest, flagged per record). `token_hashes`: id -> u64 hash of the token ids that made the
        record (erpack.tokens.token_hash), stored in the shard index; ids left out store none.
        Returns {shard, documents, skipped, replaced, tokens, bytes}; shard is None when every
        record was skipped (nothing is written then)."""
        if self._lock is None:
            raise StoreError(f"the writer of {self.path} is closed: open a new CacheWriter")
        checked = [self._check_record(k, r) for k, r in enumerate(records)]
        truncated = set(truncated)
        unknown = truncated - {c[0] for c in checked}
        if unknown:
            raise StoreError(f"truncated names ids that are not in this commit: {sorted(unknown)[:5]}")
        hashes = _check_hashes(token_hashes or {}, {c[0] for c in checked})
        keep, skipped, replaced = self._plan(checked)
        info = {"shard": None, "documents": len(keep), "skipped": skipped, "replaced": replaced,
                "tokens": sum(c[2].shape[0] for c in keep), "bytes": 0}
        if not keep:
            return info
        name = shard_name(self._next)
        flags = {c[0]: fmt.FLAG_TRUNCATED if c[0] in truncated else 0 for c in keep}
        size, sha = self._write_shard(self.path / name, keep, flags, hashes)
        try:
            manifest = self._next_manifest(name, keep, flags, size, sha)
            write_atomic(self.path / MANIFEST, dump_manifest(manifest))
        except BaseException as exc:
            (self.path / name).unlink(missing_ok=True)  # never listed: garbage either way
            _name_file(exc, self.path / MANIFEST)
            raise
        self._manifest = manifest
        self._next += 1
        for doc_id, _, arr in keep:
            self._docs[doc_id] = (arr.shape[0], flags[doc_id], hashes.get(doc_id))
        return {**info, "shard": name, "bytes": size}

    def _write_shard(self, final: Path, keep: list, flags: dict, hashes: dict) -> tuple[int, str]:
        tmp = tmp_path(final)
        try:
            with open(tmp, "wb") as f:
                builder = ShardBuilder(f)
                for doc_id, id_bytes, arr in keep:  # arr: (tokens, hidden) float32
                    payload = memoryview(self.codec.encode(arr)).cast("B")
                    builder.add(id_bytes, payload, arr.shape[0], arr.shape[1], flags[doc_id], hashes.get(doc_id))
                sha = builder.finish()
                f.flush()
                os.fsync(f.fileno())
            publish(tmp, final)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            _name_file(exc, tmp)
            raise
        return builder.size, sha

    def _next_manifest(self, name: str, keep: list, flags: dict, size: int, sha: str) -> dict:
        manifest = copy.deepcopy(self._manifest)
        counts = manifest["counts"]
        tokens = trunc = 0
        for doc_id, _, arr in keep:
            tokens += arr.shape[0]
            trunc += flags[doc_id]
            if doc_id in self._docs:  # replaced: the old record becomes dead
                old_tokens, old_flags, _ = self._docs[doc_id]
                counts["documents"] -= 1
                counts["tokens"] -= old_tokens
                counts["truncated"] -= old_flags & fmt.FLAG_TRUNCATED
        counts["documents"] += len(keep)
        counts["tokens"] += tokens
        counts["truncated"] += trunc
        counts["records"] += len(keep)
        counts["bytes"] += size
        manifest["shards"].append(
            {"name": name, "documents": len(keep), "tokens": tokens, "truncated": trunc, "bytes": size,
             "sha256": sha}
        )
        return manifest

    # ---- closing ------------------------------------------------------------------------------
    def close(self) -> None:
        """Write the id index covering every committed shard (unless index=False), then unlock."""
        if self._lock is not None:
            try:
                if self.index and getattr(self, "_manifest", None) is not None and self._manifest["shards"]:
                    self._write_index()
            finally:
                self._lock.release()
                self._lock = None

    def _write_index(self, rebuild: bool = False) -> None:
        """The id index (erpack/store/idindex.py) in the manifest, resealed; older parts removed."""
        old = self._manifest.get(idindex.FIELD)
        field = idindex.write_index(self.path, self._manifest, rebuild=rebuild)
        if field == old:
            return
        manifest = {**self._manifest, idindex.FIELD: field}
        write_atomic(self.path / MANIFEST, dump_manifest(manifest))
        self._manifest = manifest
        idindex.remove_stale_parts(self.path, [old, field])

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
