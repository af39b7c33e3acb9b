"""Golden bytes: tests/fixtures/store/v1 and v2 must read forever, and writing their input must
reproduce the newest (v2: shards with token hashes, the manifest sealed by its checksum).

`walk` re-reads a shard with nothing but `struct` and zlib, following docs/cache-format.md, so the
documented layout, the fixture and erpack's own reader are checked against each other.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from erpack.store import FORMAT_VERSION, CacheReader, verify_cache
from erpack.store.manifest import manifest_checksum
from tests.store.conftest import snapshot
from tests.store.golden import EXPECTED, HASHES, HIDDEN, META, TOKENS, write_golden

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "store"
FIXTURE = FIXTURES / f"v{FORMAT_VERSION}"  # what this erpack writes
VERSIONS = [1, 2, 3]


def walk(data: bytes) -> list[dict]:
    """Records of one shard file, parsed by the documented layout alone."""
    assert data[:8] == b"ERPKSHRD"
    version, reserved, crc = struct.unpack_from("<HHI", data, 8)
    assert version in VERSIONS and (reserved, crc) == (0, zlib.crc32(data[:12]))
    index_offset, index_length, count, index_crc, trailer_crc, magic = struct.unpack_from("<QQIII4s", data, len(data) - 32)
    assert magic == b"ERPT" and trailer_crc == zlib.crc32(data[len(data) - 32 : len(data) - 8])
    index_end = index_offset + index_length
    assert index_crc == zlib.crc32(data[index_offset:index_end])
    assert data[index_end : len(data) - 32] == b"\0" * (-index_end % 8)
    blob_start = index_offset + 32 * count
    blob_end = blob_start + (struct.unpack_from("<I", data, blob_start - 12)[0] if count else 0)  # last id_end
    blob = data[blob_start:blob_end]
    if version == 1:  # the index is entries and ids
        assert blob_end == index_end
        hashes = [None] * count
    else:  # then zero padding to 8 and one u64 token hash per record
        hashes_at = blob_end + (-blob_end % 8)
        assert data[blob_end:hashes_at] == b"\0" * (hashes_at - blob_end) and hashes_at + 8 * count == index_end
        hashes = struct.unpack_from(f"<{count}Q", data, hashes_at)
    out, offset, id_start = [], 16, 0
    for i in range(count):
        magic, flags, tokens, hidden, payload_len, id_len, crc = struct.unpack_from("<4sIIIQII", data, offset)
        payload = data[offset + 32 : offset + 32 + payload_len]
        tokens_at = offset + 32 + payload_len
        ids = None
        if flags & 2:  # version 3: T token ids follow the payload, u32 when flags & 4 else u16
            assert version >= 3 and flags & ~7 == 0
            width = 4 if flags & 4 else 2
            ids = list(struct.unpack_from(f"<{tokens}{'I' if width == 4 else 'H'}", data, tokens_at))
            tokens_at += width * tokens
        else:
            assert flags & ~1 == 0
        token_bytes = data[offset + 32 + payload_len : tokens_at]
        doc_id = data[tokens_at : tokens_at + id_len]
        assert magic == b"ERPR" and crc == zlib.crc32(data[offset : offset + 28] + payload + token_bytes + doc_id)
        end = tokens_at + id_len
        assert data[end : end + (-end % 8)] == b"\0" * (-end % 8)
        entry = struct.unpack_from("<QQIIII", data, index_offset + 32 * i)
        assert entry == (offset, payload_len, tokens, id_start + id_len, flags, crc)
        assert blob[id_start : id_start + id_len] == doc_id
        out.append({"id": doc_id.decode(), "flags": flags, "tokens": tokens, "hidden": hidden, "payload": payload,
                    "hash": hashes[i] or None, "token_ids": ids})
        offset, id_start = end + (-end % 8), id_start + id_len
    assert offset == index_offset and id_start == len(blob)
    return out


@pytest.mark.parametrize("version", VERSIONS)
def test_fixture_reads(version):
    r = CacheReader(FIXTURES / f"v{version}")
    assert r.ids() == list(EXPECTED) and r.meta == META and r.layer == 1 and r.hidden_size == HIDDEN
    for doc_id, want in EXPECTED.items():
        np.testing.assert_array_equal(r.get(doc_id), want)
    assert r.info("ü-2")["truncated"] and not r.info("c")["truncated"]
    assert r.manifest["counts"] == {"documents": 4, "tokens": 6, "truncated": 1, "records": 5,
                                    "bytes": sum(s["bytes"] for s in r.manifest["shards"])}
    report = verify_cache(FIXTURES / f"v{version}")
    assert report.ok and report.sealed == (version >= 2)
    # Version 1 shards hold no token hashes: every one reads as unknown.
    assert {d: r.token_hash(d) for d in EXPECTED} == (HASHES if version >= 2 else dict.fromkeys(EXPECTED))
    # Shards before version 3 hold no token ids.
    got = {d: (None if (t := r.get_tokens(d)) is None else t.tolist()) for d in EXPECTED}
    assert got == (TOKENS if version >= 3 else dict.fromkeys(EXPECTED))


@pytest.mark.parametrize("version", VERSIONS)
def test_fixture_follows_the_documented_layout(version):
    fixture = FIXTURES / f"v{version}"
    raw = (fixture / "manifest.json").read_bytes()
    manifest = json.loads(raw)
    assert (manifest["format"], manifest["format_version"]) == ("erpack-cache", version)
    if version >= 2:  # the checksum: sha256 of the canonical dump without it
        body = {k: v for k, v in manifest.items() if k != "checksum"}
        dump = (json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
        assert manifest["checksum"] == "sha256:" + hashlib.sha256(dump).hexdigest() == manifest_checksum(manifest)
        assert raw == (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    else:
        assert "checksum" not in manifest
    records = [rec for s in manifest["shards"] for rec in walk((fixture / s["name"]).read_bytes())]
    if version >= 3:  # flags: 1 truncated, 2 token ids follow, 4 they are u32
        assert [(rec["id"], rec["flags"], rec["tokens"], rec["hidden"]) for rec in records] == [
            ("a", 2, 2, 4), ("ü-2", 7, 1, 4), ("c", 2, 3, 4), ("a", 2, 1, 4), ("d", 0, 1, 4)]
        assert {rec["id"]: rec["token_ids"] for rec in records[1:]} == TOKENS
    else:
        assert [(rec["id"], rec["flags"], rec["tokens"], rec["hidden"]) for rec in records] == [
            ("a", 0, 2, 4), ("ü-2", 1, 1, 4), ("c", 0, 3, 4), ("a", 0, 1, 4), ("d", 0, 1, 4)]
    r = CacheReader(fixture)
    for rec in records[1:]:  # the first "a" is dead; the others are what the reader serves
        assert bytes(r.get_encoded(rec["id"])[0]) == rec["payload"]
        assert rec["hash"] == (HASHES[rec["id"]] if version >= 2 else None)


def test_writing_reproduces_the_fixture_bytes(tmp_path):
    write_golden(tmp_path / "new")
    assert snapshot(tmp_path / "new") == snapshot(FIXTURE)


def test_docs_show_the_fixture():
    from tests.store.golden import annotate

    doc = (Path(__file__).resolve().parents[2] / "docs" / "cache-format.md").read_text()
    assert annotate((FIXTURE / "shard-000001.ers").read_bytes()) in doc
    assert (FIXTURE / "manifest.json").read_text().rstrip("\n") in doc
