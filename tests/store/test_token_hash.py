"""Token hashes: stored per record in the shard index (version 2), read back by writer and reader."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from erpack.errors import CorruptRecordError, StoreError
from erpack.store import CacheReader, CacheWriter, verify_cache
from tests.store.conftest import pipe, records
from tests.store.golden import META, values

V1 = Path(__file__).resolve().parents[1] / "fixtures" / "store" / "v1"


def test_hashes_round_trip_and_follow_the_live_record(tmp_path, meta):
    recs = records(3)
    with CacheWriter(tmp_path, meta=meta, codec=pipe(), on_duplicate="replace") as w:
        w.commit_shard(recs, token_hashes={"doc-0": 7, "doc-1": 2**64 - 1})
        assert (w.token_hash("doc-0"), w.token_hash("doc-1"), w.token_hash("doc-2")) == (7, 2**64 - 1, None)
        w.commit_shard(recs[:1], token_hashes={"doc-0": 9})
    with CacheWriter(tmp_path, meta=meta, codec=pipe(), mode="append") as w:  # read back from the index
        assert (w.token_hash("doc-0"), w.token_hash("doc-1"), w.token_hash("doc-2")) == (9, 2**64 - 1, None)
    r = CacheReader(tmp_path)
    assert [r.token_hash(d) for d in ("doc-0", "doc-1", "doc-2")] == [9, 2**64 - 1, None]
    assert verify_cache(tmp_path).ok


def test_bad_hashes_are_refused_before_writing(tmp_path, meta):
    with CacheWriter(tmp_path, meta=meta, codec=pipe()) as w:
        with pytest.raises(StoreError, match="token_hashes names ids that are not in this commit"):
            w.commit_shard(records(1), token_hashes={"other": 1})
        with pytest.raises(StoreError, match="token hash must be a u64"):
            w.commit_shard(records(1), token_hashes={"doc-0": -1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_a_version_1_cache_appends_version_2_shards(tmp_path):
    shutil.copytree(V1, tmp_path / "c")
    with CacheWriter(tmp_path / "c", meta=META, codec=pipe(), mode="append") as w:
        assert w.token_hash("a") is None  # version 1: unknown
        w.commit_shard([("e", values(1, 3.0))], token_hashes={"e": 5})
    r = CacheReader(tmp_path / "c")
    assert (r.token_hash("a"), r.token_hash("e")) == (None, 5) and len(r) == 5
    assert verify_cache(tmp_path / "c").ok


def test_a_changed_hash_is_caught_by_the_index_crc(tmp_path, meta):
    with CacheWriter(tmp_path, meta=meta, codec=pipe()) as w:
        w.commit_shard(records(2), token_hashes={"doc-0": 1, "doc-1": 2})
    path = tmp_path / "shard-000000.ers"
    data = bytearray(path.read_bytes())
    data[-32 - 8] ^= 1  # the last record's token hash: the last 8 bytes before the trailer
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptRecordError, match="index at offset .*crc32 mismatch"):
        CacheReader(tmp_path).get("doc-1")  # a shard opens on first use
