"""One shard file: write it (streaming, with its sha256) and read it (memory-mapped, by record index).

Reading a shard maps the file, checks its header, trailer and index (not the records), and then
returns any record's payload as a zero-copy memoryview after checking that record's crc32. A
committed shard is never modified, so a mapping stays valid while a writer appends new shards.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from erpack.errors import CodecError, CorruptRecordError, StoreError
from erpack.store import format as fmt

VERIFY_HINT = "run `erpack verify {cache}` to list every damaged record, then re-encode those documents"


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


class ShardFile:
    """A committed shard, memory-mapped read-only. `entries`, `ids` and `hashes` (u64 token hashes,
    None for a version-1 shard) come from its index."""

    def __init__(self, path: Path, expected_size: int | None = None, limits: RecordLimits | None = None):
        self.path = Path(path)
        self.name = self.path.name
        self.limits = limits  # checked by read(); None: only the framing is checked
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if expected_size is not None and size != expected_size:
                    raise self._error(
                        f"is {size} bytes but the manifest says {expected_size}: the file was "
                        f"{'truncated' if size < expected_size else 'changed'} after it was committed"
                    )
                if size < fmt.MIN_SHARD_SIZE:
                    raise self._error(f"is {size} bytes, shorter than any shard ({fmt.MIN_SHARD_SIZE})")
                self._mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except FileNotFoundError:
            raise StoreError(
                f"shard {self.path} is listed in {self.path.parent / 'manifest.json'} but missing: "
                f"the cache folder was edited by hand or copied incompletely; copy it again or "
                f"re-encode into a new folder"
            ) from None
        self.view = memoryview(self._mmap)
        self.size = size
        try:
            self.version = fmt.unpack_file_header(self.view)
            index_offset, index_length, count, index_crc = fmt.unpack_trailer(self.view)
            if zlib.crc32(self.view[index_offset : index_offset + index_length]) != index_crc:
                raise fmt.FramingError(f"index at offset {index_offset}: crc32 mismatch")
            self.entries, self.ids, self.hashes = fmt.unpack_index(self.view, index_offset, index_length, count,
                                                                   self.version)
            if any(self.view[index_offset + index_length : size - fmt.TRAILER.size]):
                raise fmt.FramingError("the padding after the index is not zero")
        except fmt.NewerVersionError as exc:
            self.close()
            raise StoreError(f"shard {self.path} {exc}") from None
        except fmt.FramingError as exc:
            self.close()
            raise self._error(f"is damaged ({exc}): its header, footer or index cannot be trusted") from None
        self.index_offset = index_offset
        self.count = count

    def _error(self, what: str, offset: int | None = None) -> CorruptRecordError:
        exc = CorruptRecordError(f"shard {self.path} {what}; " + VERIFY_HINT.format(cache=self.path.parent))
        exc.shard, exc.record_index, exc.doc_id, exc.offset, exc.reason = self.name, None, None, offset, what
        return exc

    def record_error(self, i: int, what: str) -> CorruptRecordError:
        """A CorruptRecordError naming this shard, record i, its id and offset (also as attributes)."""
        offset = int(self.entries["offset"][i])
        exc = CorruptRecordError(
            f"shard {self.path}, record {i} (doc id {self.ids[i]!r}) at byte offset {offset}: {what}; "
            + VERIFY_HINT.format(cache=self.path.parent)
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

    def read(self, i: int, verify: bool = True) -> tuple[memoryview, tuple[int, int], int]:
        """(payload view, (tokens, hidden), flags) of record i. Checks always: framing, the zero padding
        after the record, and (T, H) against `limits`; the crc32 and id if verify."""
        e = self.entries[i]
        offset, payload_len = int(e["offset"]), int(e["payload_len"])
        try:
            flags, tokens, hidden, plen, id_len, crc = fmt.unpack_record_header(self.view, offset)
        except fmt.FramingError as exc:
            raise self.record_error(i, str(exc)) from None
        end = offset + fmt.RECORD_HEADER.size + plen + id_len
        if (plen, tokens, flags, crc) != (payload_len, int(e["tokens"]), int(e["flags"]), int(e["crc32"])):
            raise self.record_error(i, "record header disagrees with the shard index")
        last = i + 1 == self.count
        following = self.index_offset if last else int(self.entries["offset"][i + 1])
        if end > following:
            raise self.record_error(i, f"record runs past the start of {'the index' if last else 'the next record'}")
        if following - end != fmt.padding(end) or any(self.view[end:following]):
            raise self.record_error(i, f"the {following - end} byte(s) after the record are not its zero padding")
        problem = self.limits.problem(tokens, hidden) if self.limits is not None else None
        if problem:
            raise self.record_error(i, problem)
        if verify and fmt.record_crc(self.view, offset, plen, id_len) != crc:
            raise self.record_error(i, "crc32 mismatch (the bytes changed after they were written)")
        start = offset + fmt.RECORD_HEADER.size
        if verify and bytes(self.view[start + plen : end]) != self.ids[i].encode("utf-8"):
            raise self.record_error(i, "record id disagrees with the shard index")
        return self.view[start : start + plen], (tokens, hidden), flags

    def close(self) -> None:
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
            token_hash: int | None = None) -> None:
        """Write one record. `token_hash`: a u64 saying which token ids made it (None: unknown); the
        caller checks it (CacheWriter.commit_shard, before anything is written)."""
        offset = self.size
        pieces, crc = fmt.pack_record(doc_id, payload, tokens, hidden, flags)
        for piece in pieces:
            self._write(piece)
        self._ids.append(doc_id)
        self._id_end += len(doc_id)
        if self._id_end >= 1 << 32:
            raise StoreError("one shard's ids exceed 4 GiB: commit fewer documents per shard")
        self._entries.append((offset, len(payload), tokens, self._id_end, flags, crc))
        self._hashes.append(fmt.NO_HASH if token_hash is None else token_hash)

    def finish(self) -> str:
        """Write index, padding and trailer; return the file's sha256 (hex)."""
        index_offset = self.size
        entries = np.array(self._entries, dtype=fmt.INDEX_ENTRY)
        index = fmt.pack_index(entries, b"".join(self._ids), np.array(self._hashes, dtype=fmt.TOKEN_HASH))
        self._write(index + b"\0" * fmt.padding(len(index)))
        self._write(fmt.pack_trailer(index_offset, index, len(self._entries)))
        return self._sha.hexdigest()


def decode_payload(codec, shard: ShardFile, i: int, payload, shape: tuple[int, int]) -> np.ndarray:
    """codec.decode of record i's payload, checked to be float32 of the recorded shape."""
    try:
        arr = codec.decode(payload, shape=shape)
    except CodecError as exc:
        raise shard.record_error(i, f"payload does not decode ({exc})") from exc
    if not isinstance(arr, np.ndarray) or arr.shape != tuple(shape) or arr.dtype != np.float32:
        got = f"{arr.dtype} {arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
        raise shard.record_error(i, f"payload decoded to {got}, expected float32 {tuple(shape)}")
    return arr
