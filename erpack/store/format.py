"""The shard file's byte layout: magic numbers, fixed little-endian structs, pack and unpack.

A shard file is: a 16-byte file header, records one after another (each 8-byte aligned; from version 3
a record may hold its token ids between the payload and the id), an index
(one 32-byte entry per record, then the records' ids; from version 2 also zero padding to 8 bytes
and one u64 token hash per record), zero padding to 8 bytes, a 32-byte trailer.
Every byte is documented in docs/cache-format.md; tests/store/test_golden.py pins it. Changing
anything here changes the format: bump SHARD_VERSION and keep reading the old one.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

FORMAT_NAME = "erpack-cache"
# of the cache's manifest (2: sealed by a checksum; 3: may list v3 shards and a fitted codec state);
# readers accept 1 to this. Every manifest this erpack writes has this version.
FORMAT_VERSION = 3
# 2: the index ends with a u64 token hash per record; 3: records may hold token ids (FLAG_TOKENS).
# 1 and 2 are still read. Every shard this erpack writes has this version.
SHARD_VERSION = 3

ALIGN = 8

# File header: magic, version u16, reserved u16 (0), crc32 of bytes [0, 12).
FILE_MAGIC = b"ERPKSHRD"
FILE_HEADER = struct.Struct("<8sHHI")  # 16 bytes

# Record header: magic, flags u32, tokens u32, hidden u32, payload_len u64, id_len u32, crc32 u32.
# The crc32 covers header bytes [0, 28), then the payload, then the token ids (version 3, when flagged),
# then the id. A record's bytes: header, payload, token ids, id, zero padding to 8.
RECORD_MAGIC = b"ERPR"
RECORD_HEADER = struct.Struct("<4sIIIQII")  # 32 bytes
RECORD_CRC_SPAN = 28
FLAG_TRUNCATED = 1  # the document was cut at the tokenizer's max_length
FLAG_TOKENS = 2  # (version 3) the record's T token ids follow its payload
FLAG_TOKENS_U32 = 4  # (version 3, with FLAG_TOKENS) they are u32; else u16 (every id < 65536)
KNOWN_FLAGS = {1: FLAG_TRUNCATED, 2: FLAG_TRUNCATED, 3: FLAG_TRUNCATED | FLAG_TOKENS | FLAG_TOKENS_U32}

# Index entry, one per record, in record order: offset u64, payload_len u64, tokens u32,
# id_end u32 (end of this id in the id blob that follows the entries), flags u32, record crc32 u32.
INDEX_ENTRY = np.dtype(
    [("offset", "<u8"), ("payload_len", "<u8"), ("tokens", "<u4"), ("id_end", "<u4"),
     ("flags", "<u4"), ("crc32", "<u4")]
)  # 32 bytes

# Trailer (the last 32 bytes): index_offset u64, index_length u64, record_count u32,
# index crc32 u32, crc32 of trailer bytes [0, 24), magic.
TRAILER_MAGIC = b"ERPT"
TRAILER = struct.Struct("<QQIII4s")  # 32 bytes

# Token hashes (version 2): one u64 per record, in record order, after the id blob and its padding.
# 0 means "not known" (the writer's caller gave none); see erpack.tokens.token_hash for the value.
TOKEN_HASH = np.dtype("<u8")
NO_HASH = 0

assert FILE_HEADER.size == 16 and RECORD_HEADER.size == 32 and TRAILER.size == 32
assert INDEX_ENTRY.itemsize == 32

MIN_SHARD_SIZE = FILE_HEADER.size + TRAILER.size


class FramingError(ValueError):
    """Bytes that do not follow the layout; callers turn it into CorruptRecordError with context."""


class NewerVersionError(FramingError):
    """A shard written by a newer erpack than this one."""


def padding(n: int) -> int:
    """Zero bytes that follow n bytes to reach the next multiple of ALIGN."""
    return -n % ALIGN


def pack_file_header() -> bytes:
    head = struct.pack("<8sHH", FILE_MAGIC, SHARD_VERSION, 0)
    return head + struct.pack("<I", zlib.crc32(head))


def unpack_file_header(buf) -> int:
    """Check the 16-byte file header; return the shard version."""
    if len(buf) < FILE_HEADER.size:
        raise FramingError(f"file header: {len(buf)} bytes, need {FILE_HEADER.size}")
    magic, version, _reserved, crc = FILE_HEADER.unpack_from(buf, 0)
    if magic != FILE_MAGIC:
        raise FramingError(f"file header: magic {bytes(magic)!r}, expected {FILE_MAGIC!r} (not a shard)")
    if zlib.crc32(buf[:12]) != crc:
        raise FramingError("file header: crc32 mismatch")
    if version < 1:
        raise FramingError(f"file header: shard version {version} does not exist")
    if version > SHARD_VERSION:
        raise NewerVersionError(
            f"has shard version {version}, newer than this erpack reads ({SHARD_VERSION}): upgrade erpack"
        )
    return version


def pack_token_ids(ids) -> tuple[int, bytes]:
    """(flag bits, little-endian bytes) of one record's token ids: u16 when every id is below 65536,
    else u32. The caller has checked them (integers, 0 <= id < 2**32)."""
    ids = np.asarray(ids)
    if ids.size and int(ids.max()) >= 1 << 16:
        return FLAG_TOKENS | FLAG_TOKENS_U32, ids.astype("<u4").tobytes()
    return FLAG_TOKENS, ids.astype("<u2").tobytes()


def token_bytes(flags: int, tokens: int) -> int:
    """Bytes of token ids a record with these flags and T tokens holds after its payload."""
    if not flags & FLAG_TOKENS:
        return 0
    return tokens * (4 if flags & FLAG_TOKENS_U32 else 2)


def unpack_token_ids(buf, start: int, flags: int, tokens: int) -> np.ndarray:
    """The token ids (int64 (T,)) stored at buf[start:] by a record with these flags."""
    dtype = "<u4" if flags & FLAG_TOKENS_U32 else "<u2"
    return np.frombuffer(buf, dtype=dtype, count=tokens, offset=start).astype(np.int64)


def flags_problem(flags: int, version: int) -> str | None:
    """Why a record's flags cannot be in a shard of this version, or None."""
    unknown = flags & ~KNOWN_FLAGS.get(version, KNOWN_FLAGS[SHARD_VERSION])
    if unknown:
        return f"record flags {flags:#x} set bits {unknown:#x} that shard version {version} does not define"
    if flags & FLAG_TOKENS_U32 and not flags & FLAG_TOKENS:
        return f"record flags {flags:#x} say u32 token ids but no token ids"
    return None


def pack_record(doc_id: bytes, payload, tokens: int, hidden: int, flags: int,
                token_ids: bytes = b"") -> tuple[list, int]:
    """Return (pieces to write in order, crc32) for one record, padding included. `token_ids`: the
    bytes pack_token_ids made (flags then carry its bits), or b"" for a record without them."""
    head = struct.pack("<4sIIIQI", RECORD_MAGIC, flags, tokens, hidden, len(payload), len(doc_id))
    crc = zlib.crc32(doc_id, zlib.crc32(token_ids, zlib.crc32(payload, zlib.crc32(head))))
    pad = padding(RECORD_HEADER.size + len(payload) + len(token_ids) + len(doc_id))
    return [head + struct.pack("<I", crc), payload, token_ids, doc_id, b"\0" * pad], crc


def unpack_record_header(buf, offset: int) -> tuple[int, int, int, int, int, int]:
    """(flags, tokens, hidden, payload_len, id_len, crc32) of the record at offset; checks magic."""
    if offset + RECORD_HEADER.size > len(buf):
        raise FramingError("record header runs past the end of the file")
    magic, flags, tokens, hidden, payload_len, id_len, crc = RECORD_HEADER.unpack_from(buf, offset)
    if magic != RECORD_MAGIC:
        raise FramingError(f"record magic {bytes(magic)!r}, expected {RECORD_MAGIC!r}")
    return flags, tokens, hidden, payload_len, id_len, crc


def record_crc(buf, offset: int, payload_len: int, id_len: int, tok_len: int = 0) -> int:
    """crc32 of a stored record: header bytes [0, 28), payload, token ids (tok_len bytes), id (as
    pack_record computed it)."""
    start = offset + RECORD_HEADER.size
    crc = zlib.crc32(buf[offset : offset + RECORD_CRC_SPAN])
    return zlib.crc32(buf[start : start + payload_len + tok_len + id_len], crc)


def pack_index(entries: np.ndarray, id_blob: bytes, hashes: np.ndarray) -> bytes:
    """Index bytes (entries, ids, zero padding to 8, token hashes), without the padding that follows."""
    head = entries.astype(INDEX_ENTRY, copy=False).tobytes() + id_blob
    return head + b"\0" * padding(len(head)) + hashes.astype(TOKEN_HASH, copy=False).tobytes()


def pack_trailer(index_offset: int, index: bytes, count: int) -> bytes:
    head = struct.pack("<QQII", index_offset, len(index), count, zlib.crc32(index))
    return head + struct.pack("<I4s", zlib.crc32(head), TRAILER_MAGIC)


def unpack_trailer(buf, size: int | None = None) -> tuple[int, int, int, int]:
    """(index_offset, index_length, record_count, index_crc32) from the last 32 bytes of `buf`; checks
    them. `buf` is the whole file, or (`size` given: the file's size) the file's last bytes."""
    size = len(buf) if size is None else size
    if size < MIN_SHARD_SIZE or len(buf) < TRAILER.size:
        raise FramingError(f"{size} bytes is shorter than an empty shard ({MIN_SHARD_SIZE})")
    start = len(buf) - TRAILER.size
    index_offset, index_length, count, index_crc, crc, magic = TRAILER.unpack_from(buf, start)
    if magic != TRAILER_MAGIC:
        raise FramingError(f"trailer magic {bytes(magic)!r}, expected {TRAILER_MAGIC!r}")
    if zlib.crc32(buf[start : start + 24]) != crc:
        raise FramingError("trailer crc32 mismatch")
    end = index_offset + index_length
    if index_offset < FILE_HEADER.size or index_offset % ALIGN or end + padding(end) != size - TRAILER.size:
        raise FramingError(f"trailer: index at {index_offset}+{index_length} does not end at the trailer")
    if index_length < count * INDEX_ENTRY.itemsize:
        raise FramingError(f"trailer: index of {index_length} bytes cannot hold {count} entries")
    return index_offset, index_length, count, index_crc


def same_layout(a: int, b: int) -> bool:
    """Whether shard versions a and b lay out the index alike (2 and 3 do: 3 changed records only)."""
    return a == b or min(a, b) >= 2


def index_version(index, count: int) -> int:
    """The shard version an index's layout implies (2: it ends with token hashes; 1: with the id blob;
    3 where a record's flags say it holds token ids, which only version 3 has), for a reader that has
    the index but not the file header (a 2 may be a 3: same_layout). FramingError if it fits neither."""
    if count < 1 or len(index) < count * INDEX_ENTRY.itemsize:
        raise FramingError(f"index: {len(index)} bytes cannot hold {count} entries")
    last = np.frombuffer(index, dtype=INDEX_ENTRY, count=1, offset=(count - 1) * INDEX_ENTRY.itemsize)
    blob_end = count * INDEX_ENTRY.itemsize + int(last["id_end"][0])
    if len(index) == blob_end + padding(blob_end) + count * TOKEN_HASH.itemsize:
        flags = np.frombuffer(index, dtype=INDEX_ENTRY, count=count)["flags"]
        return 3 if np.any(flags & (FLAG_TOKENS | FLAG_TOKENS_U32)) else 2
    if len(index) == blob_end:
        return 1
    raise FramingError(f"index: {len(index)} bytes fit neither layout of {count} entries and their ids")


def unpack_index(buf, index_offset: int, index_length: int, count: int, version: int = SHARD_VERSION,
                 base: int = 0) -> tuple[np.ndarray, list[str], np.ndarray | None]:
    """(entries, ids, token hashes or None for a version-1 shard) from the index bytes. Checks that
    ids, hashes and record offsets are consistent. `buf` holds the file from offset `base` on."""
    index = buf[index_offset - base : index_offset - base + index_length]
    if len(index) != index_length:
        raise FramingError(f"index: {len(index)} bytes at offset {index_offset}, the trailer says {index_length}")
    entries = np.frombuffer(index, dtype=INDEX_ENTRY, count=count).copy()
    ends = entries["id_end"].astype(np.int64)
    blob_end = count * INDEX_ENTRY.itemsize + (int(ends[-1]) if count else 0)
    hashes = None
    if version >= 2:
        hash_start = blob_end + padding(blob_end)
        if index_length != hash_start + count * TOKEN_HASH.itemsize:
            raise FramingError(f"index: {index_length} bytes, but its ids and token hashes need "
                               f"{hash_start + count * TOKEN_HASH.itemsize}")
        if any(index[blob_end:hash_start]):
            raise FramingError("index: the padding after the id blob is not zero")
        hashes = np.frombuffer(index, dtype=TOKEN_HASH, count=count, offset=hash_start).copy()
    elif count and ends[-1] != index_length - count * INDEX_ENTRY.itemsize:
        raise FramingError("index: id offsets do not tile the id blob")
    blob = bytes(index[count * INDEX_ENTRY.itemsize : blob_end])
    if count and (np.any(np.diff(ends, prepend=0) <= 0) or ends[-1] != len(blob)):
        raise FramingError("index: id offsets do not tile the id blob")
    offsets = entries["offset"].astype(np.int64)
    if count and (offsets[0] != FILE_HEADER.size or np.any(np.diff(offsets) <= 0) or offsets[-1] >= index_offset
                  or np.any(offsets % ALIGN)):
        raise FramingError("index: record offsets are not increasing, aligned records before the index")
    try:
        starts = np.concatenate([[0], ends[:-1]]) if count else ends
        ids = [blob[a:b].decode("utf-8") for a, b in zip(starts.tolist(), ends.tolist())]
    except UnicodeDecodeError as exc:
        raise FramingError(f"index: an id is not utf-8 ({exc})") from None
    return entries, ids, hashes
