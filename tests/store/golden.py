"""The input of the golden caches in tests/fixtures/store/vN: write one with `python -m tests.store.golden DIR`.

Each fixture pins one cache format version byte for byte: v1 (shard version 1 without token
hashes, the manifest without checksum), v2 (shard version 2 with a token hash per record, the
manifest sealed by its checksum; the same records) and v3 (shard version 3: the same records, most
holding their token ids, u16 or u32; manifest format_version 3). Never regenerate one in place: a new format
version gets a new folder, and every older one must keep reading. Uses the lossless "fp32" pipeline,
so every byte is fixed by the store format and the fp32 codec's own (pinned) framing.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np

HIDDEN = 4
META = {
    "model": {"name": "golden-tiny", "model_type": "bert", "weights_sha256": "0" * 64, "num_layers": 2,
              "hidden_size": HIDDEN},
    "layer": 1,
    "tokenizer": {"name": "golden-tiny", "lowercase": True},
    "max_length": 3,
}


def values(tokens: int, base: float) -> np.ndarray:
    """(tokens, HIDDEN) float32: base, base + 0.25, ... exact in fp32 and fp16."""
    return (base + 0.25 * np.arange(tokens * HIDDEN, dtype=np.float32)).reshape(tokens, HIDDEN)


# Two commits: the second replaces "a" and adds "d", so the cache has one dead record. Each commit:
# (records, truncated ids, token hashes by id; "d" has none, stored as 0 = unknown; v1 has none at all).
COMMITS = [
    ([("a", values(2, 0.0)), ("ü-2", values(1, -1.0)), ("c", values(3, 10.0))], ["ü-2"],
     {"a": 0x0123456789ABCDEF, "ü-2": 0xFEDCBA9876543210, "c": 1}),
    ([("a", values(1, 100.0)), ("d", values(1, -2.5))], [], {"a": 0x8000000000000001}),
]
# Token ids of each commit's records (v3 on): "ü-2" needs u32, "d" has none.
TOKEN_IDS = [{"a": [101, 2023], "ü-2": [70000], "c": [1, 2, 3]}, {"a": [7]}]
# The token ids of each live record in the v3 fixture (None: none stored).
TOKENS = {"ü-2": [70000], "c": [1, 2, 3], "a": [7], "d": None}
# The token hash of each live record in the v2 fixture (None: unknown).
HASHES = {"ü-2": 0xFEDCBA9876543210, "c": 1, "a": 0x8000000000000001, "d": None}
# What the cache serves, in order.
EXPECTED = {"c": values(3, 10.0), "ü-2": values(1, -1.0), "a": values(1, 100.0), "d": values(1, -2.5)}
EXPECTED = {k: EXPECTED[k] for k in ("ü-2", "c", "a", "d")}


def write_golden(path: Path) -> None:
    from erpack.codecs import Pipeline
    from erpack.store import CacheWriter

    # index=False: the v2 fixture pins the format without the optional id index (idindex.py)
    with CacheWriter(path, meta=META, codec=Pipeline.from_spec("fp32"), on_duplicate="replace", index=False) as w:
        for (records, truncated, hashes), ids in zip(COMMITS, TOKEN_IDS):
            w.commit_shard(records, truncated=truncated, token_hashes=hashes, token_ids=ids)


def _row(data: bytes, start: int, size: int, what: str) -> str:
    hexes = " ".join(f"{b:02x}" for b in data[start : start + size])
    return f"{start:04x}  {hexes:<48}  {what}"


def annotate(data: bytes) -> str:
    """A hex dump of one shard, one field per line, as docs/cache-format.md shows it."""
    version = struct.unpack_from("<H", data, 8)[0]
    rows = [_row(data, 0, 8, "file header: magic ERPKSHRD"), _row(data, 8, 2, f"shard version {version}"),
            _row(data, 10, 2, "reserved"), _row(data, 12, 4, "crc32 of bytes 0000..000b")]
    index_offset, index_length, count = struct.unpack_from("<QQI", data, len(data) - 32)
    off = 16
    for i in range(count):
        _, flags, tokens, hidden, plen, id_len, _ = struct.unpack_from("<4sIIIQII", data, off)
        width = (4 if flags & 4 else 2) if flags & 2 else 0
        tok_len = width * tokens
        doc_id = data[off + 32 + plen + tok_len : off + 32 + plen + tok_len + id_len].decode()
        rows += [f"      -- record {i}: id {doc_id!r}, {tokens} token(s)",
                 _row(data, off, 4, "record magic ERPR"), _row(data, off + 4, 4, f"flags {flags}"),
                 _row(data, off + 8, 4, f"tokens {tokens}"), _row(data, off + 12, 4, f"hidden {hidden}"),
                 _row(data, off + 16, 8, f"payload_len {plen}"), _row(data, off + 24, 4, f"id_len {id_len}"),
                 _row(data, off + 28, 4, "crc32 of record bytes 0..27, payload, "
                      + ("token ids, id" if flags & 2 else "id")),
                 _row(data, off + 32, 10, "payload: fp32 codec header (tag, version, T u32, H u32)")]
        values = np.frombuffer(data[off + 42 : off + 32 + plen], "<f4")
        for t in range(tokens):
            row = ", ".join(f"{v:g}" for v in values[t * HIDDEN : (t + 1) * HIDDEN])
            rows.append(_row(data, off + 42 + 16 * t, 16, f"payload: token {t}: {row} (float32)"))
        if tok_len:
            ids = struct.unpack_from(f"<{tokens}{'I' if width == 4 else 'H'}", data, off + 32 + plen)
            rows.append(_row(data, off + 32 + plen, tok_len, f"token ids {list(ids)} (u{8 * width})"))
        end = off + 32 + plen + tok_len + id_len
        rows.append(_row(data, end - id_len, id_len, f"id {doc_id!r} (utf-8)"))
        if -end % 8:
            rows.append(_row(data, end, -end % 8, "zero padding to a multiple of 8"))
        off = end + (-end % 8)
    then = "the id blob" + (", padding, the token hashes" if version >= 2 else "")
    rows.append(f"      -- index at {index_offset}: {count} entries of 32 bytes, then {then}")
    for i in range(count):
        e = index_offset + 32 * i
        o, plen, tokens, id_end, flags, _ = struct.unpack_from("<QQIIII", data, e)
        rows += [_row(data, e, 8, f"entry {i}: record offset {o}"), _row(data, e + 8, 8, f"payload_len {plen}"),
                 _row(data, e + 16, 4, f"tokens {tokens}"), _row(data, e + 20, 4, f"id_end {id_end}"),
                 _row(data, e + 24, 4, f"flags {flags}"), _row(data, e + 28, 4, "the record's crc32")]
    blob = index_offset + 32 * count
    end = index_offset + index_length
    blob_end = blob + id_end if count else blob
    rows.append(_row(data, blob, blob_end - blob, f"id blob {data[blob:blob_end].decode()!r}"))
    if version >= 2:
        hashes = blob_end + (-blob_end % 8)
        if hashes > blob_end:
            rows.append(_row(data, blob_end, hashes - blob_end, "zero padding to a multiple of 8"))
        for i in range(count):
            (h,) = struct.unpack_from("<Q", data, hashes + 8 * i)
            rows.append(_row(data, hashes + 8 * i, 8, f"token hash of record {i}: " + (f"{h:#018x}" if h else "0 (unknown)")))
    if -end % 8:
        rows.append(_row(data, end, -end % 8, "zero padding to a multiple of 8"))
    t = len(data) - 32
    rows += ["      -- trailer (the last 32 bytes)", _row(data, t, 8, f"index_offset {index_offset}"),
             _row(data, t + 8, 8, f"index_length {index_length}"), _row(data, t + 16, 4, f"record_count {count}"),
             _row(data, t + 20, 4, "crc32 of the index"), _row(data, t + 24, 4, "crc32 of trailer bytes 0..23"),
             _row(data, t + 28, 4, "trailer magic ERPT")]
    return "\n".join(rows)


if __name__ == "__main__":
    out = Path(sys.argv[1])
    if out.exists() and any(out.iterdir()):
        sys.exit(f"{out} is not empty: golden fixtures are never regenerated in place")
    write_golden(out)
    print(f"wrote {out}")
