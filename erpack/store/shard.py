"""One shard file: write it (streaming, with its sha256) and read it (by record index), local or remote.

A local shard is memory-mapped: opening checks its header, trailer and index (not the records), and
any record's payload comes back as a zero-copy memoryview after checking that record's crc32. A
remote shard (any fsspec URL) is read by ranges: opening fetches the trailer and index with at most
two range reads (the last 64 KiB, then the rest of the index if it is larger), each record is one
range read of exactly its bytes, and sequential passes read ahead (`prefetch`, or automatically when
records are read in order). With a `shard_cache` folder a remote shard is downloaded once, checked
against the manifest's sha256, and then memory-mapped like a local one. The framing, crc32 and
(T, H) checks are the same on every path. A committed shard is never modified, so a mapping or a
fetched range stays valid while a writer appends new shards.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from erpack.errors import CodecError, CorruptRecordError, StoreError
from erpack.store import format as fmt
from erpack.store.location import Location, open_location

log = logging.getLogger("erpack.store")

VERIFY_HINT = "run `erpack verify {cache}` to list every damaged record, then re-encode those documents"
TAIL_BYTES = 64 << 10  # a remote open reads this much of the file's end: trailer and (usually) the index
READAHEAD_BYTES = 8 << 20  # a sequential pass over a remote shard fetches about this much at a time
DOWNLOAD_CHUNK = 16 << 20  # range size of a streamed download


@dataclass(frozen=True)
class RecordLimits:
    """What a record of one cache may claim, from its manifest's meta: H equal to model.hidden_size and
    1 <= T <= max_length (T unbounded when the meta has no max_length). Checked before any allocation."""

    hidden_size: int
    max_tokens: int | None = None

    @classmethod
    def from_meta(cls, meta: dict) -> RecordLimits:
        limit = meta.get("max_length")
        usable = isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1
        return cls(meta["model"]["hidden_size"], limit if usable else None)

    def problem(self, tokens: int, hidden: int) -> str | None:
        """Why a record of shape (tokens, hidden) cannot belong to this cache, or None."""
        if hidden != self.hidden_size:
            return f"record claims hidden size {hidden}, but the manifest's model.hidden_size is {self.hidden_size}"
        if tokens < 1:
            return "record claims 0 tokens (a record holds at least one)"
        if self.max_tokens is not None and tokens > self.max_tokens:
            return f"record claims {tokens} tokens, more than the manifest's max_length {self.max_tokens}"
        return None


def download_shard(location: Location, name: str, dest: Path, expected_size: int | None = None) -> tuple[int, str]:
    """Copy a shard (its first `expected_size` bytes; all of it when None) to the local file `dest` in
    DOWNLOAD_CHUNK range reads, hashing as it goes (memory stays bounded), fsynced. Returns (bytes
    copied, sha256 hex): fewer bytes than expected when the file is shorter. The caller publishes or
    removes `dest`."""
    size = location.size(name) if expected_size is None else expected_size
    sha = hashlib.sha256()
    done = 0
    with open(dest, "wb") as f:
        while done < size:
            try:
                chunk = location.read(name, done, min(done + DOWNLOAD_CHUNK, size))
            except OSError:  # a range past the end of a shorter object (416)
                if done == 0:
                    raise
                break
            if not chunk:
                break
            f.write(chunk)
            sha.update(chunk)
            done += len(chunk)
        f.flush()
        os.fsync(f.fileno())
    return done, sha.hexdigest()


def cached_copy(location: Location, name: str, shard_cache: Path, sha256: str, size: int | None) -> Path:
    """The local copy of a remote shard in `shard_cache` (content-addressed: `<sha256>.ers`), downloaded
    once and checked against the manifest's sha256 and size before it is published there atomically."""
    shard_cache = Path(shard_cache)
    final = shard_cache / f"{sha256}.ers"
    if final.is_file() and (size is None or final.stat().st_size == size):
        return final
    shard_cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=shard_cache, prefix=f".{sha256[:16]}-", suffix=".part")
    os.close(fd)
    try:
        got, digest = download_shard(location, name, Path(tmp), size)
        if (size is not None and got != size) or digest != sha256:
            raise StoreError(
                f"shard {location / name} does not match the manifest ({got} bytes, sha256 {digest[:16]}...; "
                f"the manifest says {size} bytes, sha256 {sha256[:16]}...): the shard changed after it was "
                f"committed; " + VERIFY_HINT.format(cache=location)
            )
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return final


class ShardFile:
    """A committed shard, opened for reading: `location` (a Location, path or URL) and `name` in it.
    `entries`, `ids` and `hashes` (u64 token hashes, None for a version-1 shard) come from its index.

    Local shards are memory-mapped; remote ones are read by ranges (see the module docstring), or, with
    `shard_cache` (a local folder) and the manifest's `sha256`, downloaded once into that folder,
    checked and mapped. `ShardFile(path)` (a path, no name) still opens a local shard file.
    `readahead`: bytes a sequential pass over a remote shard fetches at a time (0: none)."""

    def __init__(self, location, name: str | None = None, expected_size: int | None = None,
                 limits: RecordLimits | None = None, shard_cache: Path | None = None, sha256: str | None = None,
                 readahead: int = READAHEAD_BYTES, local_copy: Path | None = None):
        if name is None:  # ShardFile(path): a local shard file
            path = Path(location)
            location, name = open_location(path.parent), path.name
        self.location = open_location(location)
        self.name = name
        self.path = self.location.local / name if self.location.is_local else None  # None: remote
        self.limits = limits  # checked by read(); None: only the framing is checked
        self.readahead = readahead
        self.view = None  # the whole file (mapped); None when read by ranges
        self._mmap = None
        self._ahead: tuple[int, memoryview] | None = None  # (start offset, bytes) of the read-ahead window
        self._last = -2  # the record read last (sequential passes read ahead)
        self.header_checked = False
        if self.path is None and local_copy is None and shard_cache is not None:
            if sha256:
                local_copy = cached_copy(self.location, name, shard_cache, sha256, expected_size)
            else:
                log.warning("%s: no sha256 to check a download against, so the shard cache is not used",
                            self.location / name)
        self.remote = self.path is None and local_copy is None  # records read by range requests
        if not self.remote:
            self._map(self.path if local_copy is None else Path(local_copy), expected_size)
            buf, base, size = self.view, 0, len(self.view)
        else:
            buf, base, size = self._fetch_tail(expected_size)
        self.size = size
        try:
            self._parse(buf, base, size)
        except fmt.NewerVersionError as exc:
            self.close()
            raise StoreError(f"shard {self.where} {exc}") from None
        except fmt.FramingError as exc:
            self.close()
            raise self._error(f"is damaged ({exc}): its header, footer or index cannot be trusted") from None

    @property
    def where(self) -> str:
        """The shard's path or URL, for messages."""
        return self.location / self.name

    def _missing(self) -> StoreError:
        return StoreError(
            f"shard {self.where} is listed in {self.location / 'manifest.json'} but missing: "
            f"the cache was edited by hand or copied incompletely; copy it again or "
            f"re-encode into a new folder"
        )

    def _check_size(self, size: int, expected_size: int | None) -> None:
        if expected_size is not None and size != expected_size:
            raise self._error(
                f"is {size} bytes but the manifest says {expected_size}: the file was "
                f"{'truncated' if size < expected_size else 'changed'} after it was committed"
            )
        if size < fmt.MIN_SHARD_SIZE:
            raise self._error(f"is {size} bytes, shorter than any shard ({fmt.MIN_SHARD_SIZE})")

    def _map(self, path: Path, expected_size: int | None) -> None:
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                self._check_size(size, expected_size)
                self._mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except FileNotFoundError:
            raise self._missing() from None
        self.view = memoryview(self._mmap)

    def _fetch_tail(self, expected_size: int | None) -> tuple[memoryview, int, int]:
        """(the file's last bytes, their offset, the file size): one range read, which also checks the
        size (one byte past the expected end is asked for; a longer file returns it)."""
        try:
            if expected_size is None:
                expected_size = self.location.size(self.name)
            start = max(0, expected_size - TAIL_BYTES)
            if start < fmt.FILE_HEADER.size:  # the whole file, so that the header is checked too
                start = 0
            tail = self.location.read(self.name, start, expected_size + 1)
        except FileNotFoundError:
            raise self._missing() from None
        except OSError:  # a range past the end of a shorter object (416): say how long it is
            tail, start = b"", None
        if start is None or len(tail) != expected_size - start:
            try:
                size = self.location.size(self.name)
            except FileNotFoundError:
                raise self._missing() from None
            self._check_size(size, expected_size)
        self._check_size(expected_size, None)
        return memoryview(tail), start, expected_size

    def _parse(self, buf, base: int, size: int) -> None:
        """Check the trailer and index in `buf` (the file from offset `base`), fetching the rest of the
        index when the tail did not hold all of it; the file header too when `buf` starts at 0."""
        index_offset, index_length, count, index_crc = fmt.unpack_trailer(buf, size)
        if index_offset < base:  # a remote index larger than the tail: one more range read
            rest = self._range(index_offset, base)
            buf, base = memoryview(bytes(rest) + bytes(buf)), index_offset
        index = buf[index_offset - base : index_offset - base + index_length]
        if zlib.crc32(index) != index_crc:
            raise fmt.FramingError(f"index at offset {index_offset}: crc32 mismatch")
        if base == 0:
            self.version = fmt.unpack_file_header(buf)
            self.header_checked = True
        else:  # checked when its bytes are read: by verify, or with record 0
            self.version = fmt.index_version(index, count)
        self.entries, self.ids, self.hashes = fmt.unpack_index(buf, index_offset, index_length, count,
                                                               self.version, base)
        if any(buf[index_offset + index_length - base : size - fmt.TRAILER.size - base]):
            raise fmt.FramingError("the padding after the index is not zero")
        self.index_offset = index_offset
        self.count = count
        if self.remote:  # the fetched tail serves the records it holds (all of a small shard)
            self._ahead = (base, buf)

    def _range(self, start: int, end: int) -> memoryview:
        """Bytes [start, end) of the remote file, exactly (a shorter answer means the file changed)."""
        try:
            data = self.location.read(self.name, start, end)
        except FileNotFoundError:
            raise self._missing() from None
        if len(data) != end - start:
            raise self._error(f"returned {len(data)} bytes for the range {start}-{end}: the file changed after "
                              f"it was committed", start)
        return memoryview(data)

    def _error(self, what: str, offset: int | None = None) -> CorruptRecordError:
        exc = CorruptRecordError(f"shard {self.where} {what}; " + VERIFY_HINT.format(cache=self.location))
        exc.shard, exc.record_index, exc.doc_id, exc.offset, exc.reason = self.name, None, None, offset, what
        return exc

    def record_error(self, i: int, what: str) -> CorruptRecordError:
        """A CorruptRecordError naming this shard, record i, its id and offset (also as attributes)."""
        offset = int(self.entries["offset"][i])
        exc = CorruptRecordError(
            f"shard {self.where}, record {i} (doc id {self.ids[i]!r}) at byte offset {offset}: {what}; "
            + VERIFY_HINT.format(cache=self.location)
        )
        exc.shard, exc.record_index, exc.doc_id, exc.offset, exc.reason = self.name, i, self.ids[i], offset, what
        return exc

    def token_hash(self, i: int) -> int | None:
        """Record i's token hash (erpack.tokens.token_hash), or None where unknown: a version-1 shard,
        or a record whose writer gave none."""
        if self.hashes is None or int(self.hashes[i]) == fmt.NO_HASH:
            return None
        return int(self.hashes[i])

    def record_size(self) -> np.ndarray:
        """Bytes each record takes in the file, alignment padding included."""
        offsets = self.entries["offset"].astype(np.int64)
        return np.diff(offsets, append=self.index_offset)

    def _end(self, i: int) -> int:
        """Where record i's bytes (padding included) end: the next record's offset, or the index."""
        return self.index_offset if i + 1 >= self.count else int(self.entries["offset"][i + 1])

    # ---- remote reads: one range per record, read-ahead for sequential passes --------------------
    def prefetch(self, first: int, last: int) -> int:
        """Fetch records first..last-1 of a remote shard in one range read and keep them (one window
        at a time) for the reads that follow. Returns the bytes fetched (0 for a mapped shard)."""
        window = self._fetch(first, last)
        return 0 if window is None else len(window[1])

    def _fetch(self, first: int, last: int) -> tuple[int, memoryview] | None:
        """(start offset, bytes) of records first..last-1, fetched and made the read-ahead window."""
        if not self.remote or self.count == 0:
            return None
        first, last = max(0, first), min(self.count, last)
        if first >= last:
            return None
        start, end = int(self.entries["offset"][first]), self._end(last - 1)
        if first == 0 and not self.header_checked:  # the 16 header bytes come along: check them
            start = 0
        data = self._range(start, end)
        if start == 0:
            self._check_header(data)
        self._ahead = window = (start, data)  # one assignment: a reader in another thread sees old or new
        return window

    def _check_header(self, data) -> None:
        try:
            version = fmt.unpack_file_header(data)
        except fmt.NewerVersionError as exc:
            raise StoreError(f"shard {self.where} {exc}") from None
        except fmt.FramingError as exc:
            raise self._error(f"is damaged ({exc}): its header cannot be trusted", 0) from None
        if not fmt.same_layout(version, self.version) or (self.version == 3 and version != 3):
            raise self._error(f"is damaged: its header says shard version {version}, its index is laid out as "
                              f"version {self.version}", 0)
        self.version = version
        self.header_checked = True

    def _window(self, i: int, end: int) -> tuple[memoryview, int]:
        """(buffer, offset of its first byte) holding record i's bytes up to `end`."""
        if not self.remote:
            return self.view, 0
        start = int(self.entries["offset"][i])
        window = self._ahead
        if i == 0 and not self.header_checked:  # record 0 comes with the file header, which is checked
            window = None
        if window is None or not (window[0] <= start and end <= window[0] + len(window[1])):
            if (i == self._last + 1 or i == 0) and self.readahead > 0:  # sequential: ~readahead bytes at once
                j = int(np.searchsorted(self.entries["offset"], start + self.readahead, side="right"))
                window = self._fetch(i, max(j, i + 1))
            elif i == 0:
                window = self._fetch(0, 1)
            else:
                window = (start, self._range(start, end))
        self._last = i
        return window[1], window[0]

    def read(self, i: int, verify: bool = True) -> tuple[memoryview, tuple[int, int], int]:
        """(payload view, (tokens, hidden), flags) of record i: read_record without the token ids."""
        return self.read_record(i, verify)[:3]

    def token_ids(self, i: int, verify: bool = True) -> np.ndarray | None:
        """Record i's token ids (int64 (T,)), or None where it holds none (shards before version 3)."""
        return self.read_record(i, verify)[3]

    def read_record(self, i: int, verify: bool = True
                    ) -> tuple[memoryview, tuple[int, int], int, np.ndarray | None]:
        """(payload view, (tokens, hidden), flags, token ids int64 (T,) or None) of record i. Checks
        always: framing, flags, the zero padding after the record, and (T, H) against `limits`; the
        crc32 (which covers the token ids) and id if verify. A remote shard reads the record's bytes
        (one range) unless a read-ahead window holds them."""
        e = self.entries[i]
        offset, payload_len = int(e["offset"]), int(e["payload_len"])
        following = self._end(i)
        buf, base = self._window(i, following)
        at = offset - base  # the record's offset in buf
        try:
            flags, tokens, hidden, plen, id_len, crc = fmt.unpack_record_header(buf, at)
        except fmt.FramingError as exc:
            raise self.record_error(i, str(exc)) from None
        if (plen, tokens, flags, crc) != (payload_len, int(e["tokens"]), int(e["flags"]), int(e["crc32"])):
            raise self.record_error(i, "record header disagrees with the shard index")
        problem = fmt.flags_problem(flags, self.version)
        if problem:
            raise self.record_error(i, problem)
        tok_len = fmt.token_bytes(flags, tokens)
        end = offset + fmt.RECORD_HEADER.size + plen + tok_len + id_len
        last = i + 1 == self.count
        if end > following:
            raise self.record_error(i, f"record runs past the start of {'the index' if last else 'the next record'}")
        if following - end != fmt.padding(end) or any(buf[end - base : following - base]):
            raise self.record_error(i, f"the {following - end} byte(s) after the record are not its zero padding")
        problem = self.limits.problem(tokens, hidden) if self.limits is not None else None
        if problem:
            raise self.record_error(i, problem)
        if verify and fmt.record_crc(buf, at, plen, id_len, tok_len) != crc:
            raise self.record_error(i, "crc32 mismatch (the bytes changed after they were written)")
        start = at + fmt.RECORD_HEADER.size
        if verify and bytes(buf[start + plen + tok_len : end - base]) != self.ids[i].encode("utf-8"):
            raise self.record_error(i, "record id disagrees with the shard index")
        ids = fmt.unpack_token_ids(buf, start + plen, flags, tokens) if tok_len else None
        return buf[start : start + plen], (tokens, hidden), flags, ids

    def close(self) -> None:
        self._ahead = None
        view, self.view = getattr(self, "view", None), None
        if view is not None:
            view.release()
        try:
            self._mmap.close()
        except (BufferError, AttributeError):  # a payload view handed out is still alive: GC closes it
            pass


class ShardBuilder:
    """Writes records to an open binary file, then the index and trailer. Tracks size and sha256."""

    def __init__(self, f):
        self._f = f
        self._sha = hashlib.sha256()
        self.size = 0
        self._entries: list[tuple] = []
        self._ids: list[bytes] = []
        self._hashes: list[int] = []
        self._id_end = 0
        self._write(fmt.pack_file_header())

    def _write(self, data) -> None:
        self._f.write(data)
        self._sha.update(data)
        self.size += len(data)

    def add(self, doc_id: bytes, payload, tokens: int, hidden: int, flags: int,
            token_hash: int | None = None, token_ids=None) -> int:
        """Write one record; return its flags. `token_hash`: a u64 saying which token ids made it
        (None: unknown); `token_ids`: its T token ids (stored in the record, FLAG_TOKENS set), or
        None. The caller checks both (CacheWriter.commit_shard, before anything is written)."""
        offset = self.size
        raw = b""
        if token_ids is not None:
            bits, raw = fmt.pack_token_ids(token_ids)
            flags |= bits
        pieces, crc = fmt.pack_record(doc_id, payload, tokens, hidden, flags, raw)
        for piece in pieces:
            self._write(piece)
        self._ids.append(doc_id)
        self._id_end += len(doc_id)
        if self._id_end >= 1 << 32:
            raise StoreError("one shard's ids exceed 4 GiB: commit fewer documents per shard")
        self._entries.append((offset, len(payload), tokens, self._id_end, flags, crc))
        self._hashes.append(fmt.NO_HASH if token_hash is None else token_hash)
        return flags

    def finish(self) -> str:
        """Write index, padding and trailer; return the file's sha256 (hex)."""
        index_offset = self.size
        entries = np.array(self._entries, dtype=fmt.INDEX_ENTRY)
        index = fmt.pack_index(entries, b"".join(self._ids), np.array(self._hashes, dtype=fmt.TOKEN_HASH))
        self._write(index + b"\0" * fmt.padding(len(index)))
        self._write(fmt.pack_trailer(index_offset, index, len(self._entries)))
        return self._sha.hexdigest()


def missing_tokens(owner, i: int) -> CorruptRecordError:
    """The error for a record without token ids read under a codec that needs them."""
    return owner.record_error(i, "the record holds no token ids, which its codec needs to decode it (the shard "
                                 "was written without them): re-encode these documents with `erpack encode`, "
                                 "which stores every document's token ids")


def decode_payload(codec, shard, i: int, payload, shape: tuple[int, int], tokens=None) -> np.ndarray:
    """codec.decode of record i's payload (with its token ids where the codec needs them), checked to
    be float32 of the recorded shape."""
    needs = getattr(codec, "needs_tokens", False)
    if needs and tokens is None:
        raise missing_tokens(shard, i)
    try:
        arr = codec.decode(payload, shape=shape, tokens=tokens) if needs else codec.decode(payload, shape=shape)
    except CodecError as exc:
        raise shard.record_error(i, f"payload does not decode ({exc})") from exc
    if not isinstance(arr, np.ndarray) or arr.shape != tuple(shape) or arr.dtype != np.float32:
        got = f"{arr.dtype} {arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
        raise shard.record_error(i, f"payload decoded to {got}, expected float32 {tuple(shape)}")
    return arr
