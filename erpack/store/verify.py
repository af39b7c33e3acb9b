"""verify_cache: check a whole cache and list every damaged shard and record (never raises on damage).

Per listed shard: the file exists, has the manifest's size and sha256, its header, trailer and
index check out; per record: framing, crc32, agreement with the index, and (unless decode=False)
that the codec decodes it to float32 (tokens, hidden). Then the manifest's counts against the
shards. Unlisted shard or .tmp files are reported as warnings (the next writer removes them), and so
is a version-1 manifest, which has no checksum: `seal_cache` checks such a cache and seals it.
A damaged manifest is not a report but a StoreError (nothing in the cache can be trusted without it).

A cache at a URL is checked the same way: each shard is downloaded by ranges into a temp file (hashed
as it streams; the next one downloads while this one is checked, so at most two are on local disk),
mapped, and checked; messages name its URL.
"""

from __future__ import annotations

import hashlib
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from erpack.checksums import file_sha256
from erpack.errors import CodecError, CorruptRecordError, StoreError
from erpack.store import codec_state, idindex
from erpack.store.atomic import FolderLock
from erpack.store.format import FLAG_TRUNCATED, FORMAT_VERSION
from erpack.store.location import Location, open_location
from erpack.store.manifest import (
    MANIFEST,
    SHARD_RE,
    at_current_version,
    is_sealed,
    load_manifest,
    write_manifest,
)
from erpack.store.shard import RecordLimits, ShardFile, decode_payload, download_shard

UNSEALED = (f"{MANIFEST} is format version 1: it has no checksum, so a changed byte in it would go unnoticed; "
            f"`erpack verify --seal {{cache}}` checks the whole cache and then seals the manifest (version "
            f"{FORMAT_VERSION}, which an erpack older than this one cannot read)")


@dataclass
class Failure:
    """One damaged thing: a shard (`record_index` None: missing, wrong size or sha256, damaged
    footer/index), a record in it, or the manifest's counts. `live`: whether the record is the one
    the cache serves for its id (False: superseded by a replace; None: not a record, or unknown)."""

    shard: str
    error: str
    record_index: int | None = None
    doc_id: str | None = None
    offset: int | None = None
    live: bool | None = None

    def as_dict(self) -> dict:
        return {"shard": self.shard, "record_index": self.record_index, "doc_id": self.doc_id,
                "offset": self.offset, "error": self.error, "live": self.live}


@dataclass
class ShardCheck:
    """What verify found in one listed shard: `records` None when its index could not be read."""

    name: str
    ok: bool = False
    records: int | None = None
    failed_records: int = 0
    sha256_ok: bool | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class VerifyReport:
    """A whole cache checked: every damaged shard and record (`failures`), warnings, and what was
    read. `documents` is None when a shard's index is unreadable (`unreadable` names them);
    `sealed_now` is set by seal_cache, `manifest_error` when the manifest itself is damaged (then
    nothing else could be checked). as_dict() is the JSON `erpack verify --json` prints."""

    path: str
    ok: bool
    sealed: bool | None
    unreadable: list[str]
    documents: int | None
    records: int | None
    decoded: bool
    shards: list[ShardCheck]
    failures: list[Failure]
    warnings: list[str]
    sealed_now: bool | None = None
    manifest_error: str | None = None

    def as_dict(self) -> dict:
        d = {"path": self.path, "ok": self.ok, "sealed": self.sealed, "unreadable": list(self.unreadable),
             "documents": self.documents, "records": self.records, "decoded": self.decoded,
             "shards": [s.as_dict() for s in self.shards], "failures": [f.as_dict() for f in self.failures],
             "warnings": list(self.warnings)}
        if self.sealed_now is not None:
            d["sealed_now"] = self.sealed_now
        if self.manifest_error is not None:
            d["manifest_error"] = self.manifest_error
        return d


def _check_records(shard: ShardFile, codec, decode: bool, report: ShardCheck) -> list[Failure]:
    """Read (and decode) every record of an open shard; one Failure per damaged record."""
    failures = []
    for i in range(shard.count):
        try:
            payload, shape, _, tokens = shard.read_record(i, verify=True)
            if decode:
                decode_payload(codec, shard, i, payload, shape, tokens)
            del payload
        except CorruptRecordError as exc:
            report.failed_records += 1
            failures.append(Failure(report.name, exc.reason, i, exc.doc_id, exc.offset))
    return failures


def _copies(loc: Location, entries: list[dict], tmp: str):
    """(entry, local file or None when missing, its sha256 or None) for each shard: the file itself in a
    local folder; for a URL a download into `tmp` (by ranges, hashed as it streams), the next shard
    downloading while the caller checks this one (at most two on local disk), each deleted after."""
    if loc.is_local:
        for entry in entries:
            path = loc.local / entry["name"]
            yield entry, (path if path.is_file() else None), None
        return

    def fetch(entry: dict) -> tuple[Path | None, str | None]:
        try:
            size = loc.size(entry["name"])
        except FileNotFoundError:
            return None, None
        copy = Path(tmp) / entry["name"]
        return copy, download_shard(loc, entry["name"], copy, size)[1]

    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(fetch, entries[0]) if entries else None
        for k, entry in enumerate(entries):
            copy, sha = pending.result()
            pending = pool.submit(fetch, entries[k + 1]) if k + 1 < len(entries) else None
            try:
                yield entry, copy, sha
            finally:
                if copy is not None:
                    copy.unlink(missing_ok=True)


def _check_shard(loc: Location, entry: dict, path: Path | None, sha: str | None, codec, decode: bool,
                 limits: RecordLimits) -> tuple[ShardCheck, list[Failure], list | None]:
    """(shard check, failures, [(id, tokens, flags)] or None when the index is unreadable), from the
    shard's local file `path` (None: missing): the file itself, or a download whose sha256 is `sha`."""
    name = entry["name"]
    report = ShardCheck(name)
    if path is None:
        return report, [Failure(name, "listed in the manifest but missing")], None
    copy = None if loc.is_local else path
    try:
        shard = ShardFile(loc, name, expected_size=entry["bytes"], limits=limits, local_copy=copy)
    except CorruptRecordError as exc:
        report.sha256_ok = (sha or file_sha256(path)) == entry.get("sha256")
        return report, [Failure(name, exc.reason, offset=exc.offset)], None
    try:  # the sha256 of the mapping: the file is read once, its pages then serve the record checks
        report.sha256_ok = (sha or hashlib.sha256(shard.view).hexdigest()) == entry.get("sha256")
        report.records = shard.count
        failures = _check_records(shard, codec, decode, report)
        rows = list(zip(shard.ids, shard.entries["tokens"].tolist(), shard.entries["flags"].tolist()))
    finally:
        shard.close()
    if not report.sha256_ok and not failures:  # every byte checks out: the manifest's sha256 is wrong
        failures.append(Failure(name, "sha256 of the file differs from the manifest's, though every "
                                      "record, its padding and the index check out"))
    for key, value in (("documents", len(rows)), ("tokens", sum(r[1] for r in rows))):
        if entry.get(key) != value:
            failures.append(Failure(name, f"manifest says {key}={entry.get(key)}, the shard index holds {value}"))
    report.ok = not failures
    return report, failures, rows


def _count_failures(manifest: dict, where: dict) -> list[Failure]:
    """The manifest's counts against the live records of the shards (every index read)."""
    live = {"documents": len(where), "tokens": sum(w[2] for w in where.values()),
            "truncated": sum(w[3] & FLAG_TRUNCATED for w in where.values())}
    return [Failure(MANIFEST, f"counts.{key} is {manifest['counts'].get(key)}, the shards hold {value}")
            for key, value in live.items() if manifest["counts"].get(key) != value]


def _leftover_warnings(loc: Location, manifest: dict) -> list[str]:
    """Unlisted shard or .tmp files (an interrupted write), and an unsealed manifest."""
    listed = {e["name"] for e in manifest["shards"]} | {(manifest.get(codec_state.FIELD) or {}).get("name")}
    warnings = [
        f"{name}: not listed in the manifest (left by an interrupted write; the next writer removes it)"
        for name in loc.listdir()
        if ((SHARD_RE.match(name) or codec_state.STATE_RE.match(name)) and name not in listed) or name.endswith(".tmp")
    ]
    if not is_sealed(manifest):
        warnings.append(UNSEALED.format(cache=loc))
    return warnings


def _shown(loc: Location) -> str:
    return str(loc.local) if loc.is_local else loc.url


def verify_cache(where, decode: bool = True, manifest: dict | None = None, codec=None,
                 storage_options: dict | None = None) -> VerifyReport:
    """Check every shard and record of the cache at `where` (a folder, URL or Location; see
    VerifyReport); raises StoreError for a damaged manifest, never for damage in the shards."""
    folder = open_location(where, storage_options)
    manifest = manifest if manifest is not None else load_manifest(folder)
    state_failures = []
    try:  # the fitted state (when the codec has one): present, its sha256, format and context
        state = codec_state.read_state(folder, manifest)
        try:  # also says a fitted codec's state is missing from the manifest
            full = codec_state.cache_codec(folder, manifest, state)
        except CodecError:  # a codec this erpack does not know: only a decoding pass needs it
            if decode:
                raise
            full = None
        if decode and codec is None:
            codec = full
    except StoreError as exc:
        name = (manifest.get(codec_state.FIELD) or {}).get("name", codec_state.FIELD)
        state_failures.append(Failure(name, str(exc)))
        decode = False  # nothing decodes without it
    limits = RecordLimits.from_meta(manifest["meta"])
    shards, failures, where, unreadable = [], [], {}, []
    with tempfile.TemporaryDirectory(prefix="erpack-verify-") as tmp:
        for s, (entry, path, sha) in enumerate(_copies(folder, manifest["shards"], tmp)):
            report, found, rows = _check_shard(folder, entry, path, sha, codec, decode, limits)
            shards.append(report)
            failures += [(s, f) for f in found]
            if rows is None:
                unreadable.append(entry["name"])
                continue
            for i, (doc_id, tokens, flags) in enumerate(rows):
                where[doc_id] = (s, i, tokens, flags)
    for s, f in failures:
        hit = where.get(f.doc_id)
        f.live = None if hit is None else hit[:2] == (s, f.record_index)
    failures = state_failures + [f for _, f in failures]
    readable = not unreadable
    if readable:  # counts can only be recomputed when every index could be read
        failures += _count_failures(manifest, where)
        failures += [Failure(name, problem) for name, problem in idindex.check_index(folder, manifest)]
    return VerifyReport(
        path=_shown(folder), ok=not failures, sealed=is_sealed(manifest), unreadable=unreadable,
        documents=len(where) if readable else None, records=sum(r.records or 0 for r in shards),
        decoded=decode, shards=shards, failures=failures, warnings=_leftover_warnings(folder, manifest),
    )


def manifest_failure(path, exc: Exception) -> VerifyReport:
    """The report of a cache whose manifest is damaged: nothing else can be checked without it."""
    return VerifyReport(path=str(path), ok=False, sealed=None, unreadable=[], documents=None, records=None,
                        decoded=False, shards=[], warnings=[], manifest_error=str(exc),
                        failures=[Failure(MANIFEST, str(exc))])


def seal_cache(where, storage_options: dict | None = None) -> VerifyReport:
    """Verify the whole cache (decoding every record), holding the writer lock; if every check passes
    and its manifest is version 1, rewrite it atomically at the current version, sealed by its
    checksum. The report gets `sealed_now` (True when this call sealed it). Shards are not touched.
    A cache at a URL has no lock: no writer may run meanwhile (the caller's job, as for writing)."""
    folder = open_location(where, storage_options)
    load_manifest(folder)  # a clear error for a folder that is not a cache, before taking the lock
    lock = FolderLock(folder.local) if folder.is_local else None
    try:
        manifest = load_manifest(folder)  # under the lock: no writer can change it now
        report = verify_cache(folder, decode=True, manifest=manifest)
        report.sealed_now = False
        if report.ok and not report.sealed:
            write_manifest(folder, at_current_version(manifest))
            report.sealed = report.sealed_now = True
            report.warnings = [w for w in report.warnings if not w.startswith(f"{MANIFEST} is format version 1")]
    finally:
        if lock is not None:
            lock.release()
    return report
