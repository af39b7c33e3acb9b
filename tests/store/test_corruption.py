"""Damage on disk: a flipped byte, a truncated shard, a broken footer, leftovers of a crash."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from erpack.errors import CorruptRecordError, StoreError
from erpack.store import CacheReader, CacheWriter, verify_cache
from erpack.store.shard import ShardFile
from tests.store.conftest import pipe, records


@pytest.fixture
def cache(tmp_path, meta):
    with CacheWriter(tmp_path, meta=meta, codec=pipe()) as w:
        w.commit_shard(records(4, seed=1, prefix="a"))
        w.commit_shard(records(4, seed=2, prefix="b"))
    return tmp_path


def flip(path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where, reason", [(32 + 5, "crc32 mismatch"), (8, "disagrees with the shard index"),
                                           (0, "record magic")])
def test_flipped_byte_names_shard_record_and_offset(cache, where, reason):
    info = CacheReader(cache).info("b-2")
    flip(cache / "shard-000001.ers", info["offset"] + where)
    r = CacheReader(cache)
    with pytest.raises(CorruptRecordError) as e:
        r.get("b-2")
    msg = str(e.value)
    assert "shard-000001.ers" in msg and "record 2" in msg and "'b-2'" in msg and reason in msg
    assert f"byte offset {info['offset']}" in msg and "erpack verify" in msg and "re-encode" in msg
    np.testing.assert_array_equal(r.get("b-1"), dict(records(4, seed=2, prefix="b"))["b-1"])  # others fine
    with pytest.raises(CorruptRecordError, match="record 2"):
        list(r)
    with pytest.raises(CorruptRecordError, match="'b-2'"):  # in a batch too, named
        r.get_batch(["b-1", "b-2", "a-0"])
    report = r.verify()
    assert not report.ok
    assert [(f.shard, f.record_index, f.doc_id, f.offset, f.live) for f in report.failures] == [
        ("shard-000001.ers", 2, "b-2", info["offset"], True)
    ]
    assert report.shards[0].ok and not report.shards[1].ok
    assert report.shards[1].sha256_ok is False and report.shards[1].failed_records == 1


def test_flipped_id_byte_and_unchecked_reads(cache):
    info = CacheReader(cache).info("a-1")
    flip(cache / "shard-000000.ers", info["offset"] + 32 + info["payload_bytes"])  # first byte of the id
    with pytest.raises(CorruptRecordError, match="crc32 mismatch"):
        CacheReader(cache).get("a-1")
    assert CacheReader(cache, verify_checksums=False).get("a-1").shape[1] == 8  # told not to check


def test_truncated_shard(cache):
    path = cache / "shard-000000.ers"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(CorruptRecordError, match=r"shard-000000.ers is \d+ bytes but the manifest says \d+.*truncated"):
        list(CacheReader(cache))  # a shard opens on first use
    report = verify_cache(cache)
    assert not report.ok and report.documents is None
    assert [(f.shard, f.record_index) for f in report.failures] == [("shard-000000.ers", None)]
    assert "truncated" in report.failures[0].error


@pytest.mark.parametrize("from_end", [1, 20, 40])  # trailer magic, trailer crc, index
def test_damaged_footer(cache, from_end):
    path = cache / "shard-000001.ers"
    flip(path, path.stat().st_size - from_end)
    with pytest.raises(CorruptRecordError, match="shard-000001.ers is damaged"):
        list(CacheReader(cache))  # a shard opens on first use
    report = verify_cache(cache)
    assert [(f.shard, f.record_index) for f in report.failures] == [("shard-000001.ers", None)]


def test_damage_in_record_padding_is_caught_by_reads(cache):
    """The zero padding after a record is covered by no crc32: readers check it is zero."""
    info = CacheReader(cache).info("a-0")
    pad_at = info["offset"] + 32 + info["payload_bytes"] + 3  # id "a-0" is 3 bytes: next is padding
    flip(cache / "shard-000000.ers", pad_at)
    r = CacheReader(cache, verify_checksums=False)  # checked even without crc32s
    with pytest.raises(CorruptRecordError, match=r"record 0 \(doc id 'a-0'\).*not its zero padding"):
        r.get("a-0")
    r.get("a-1")
    report = verify_cache(cache)
    assert [(f.shard, f.record_index, f.doc_id) for f in report.failures] == [("shard-000000.ers", 0, "a-0")]


def test_damage_in_index_padding_is_caught_when_the_shard_opens(cache):
    path = cache / "shard-000000.ers"
    shard = ShardFile(path)  # version 2: ids (12 bytes), 4 bytes of padding, a u64 hash per record
    hashes = 8 * shard.count
    shard.close()
    flip(path, path.stat().st_size - 32 - hashes - 1)  # the last padding byte after the id blob
    with pytest.raises(CorruptRecordError, match="shard-000000.ers is damaged"):
        list(CacheReader(cache))  # a shard opens on first use
    assert [(f.shard, f.record_index) for f in verify_cache(cache).failures] == [("shard-000000.ers", None)]


def test_missing_shard(cache):
    (cache / "shard-000001.ers").unlink()
    with pytest.raises(StoreError, match="shard-000001.ers is listed .* but missing"):
        list(CacheReader(cache))  # a shard opens on first use
    assert verify_cache(cache).failures[0].error == "listed in the manifest but missing"


def test_leftovers_are_removed_on_reopen(cache, meta, caplog):
    shard = (cache / "shard-000001.ers").read_bytes()
    (cache / "shard-000002.ers").write_bytes(shard)  # renamed, but the manifest was never rewritten
    (cache / "shard-000003.ers.tmp").write_bytes(shard[:100])  # killed while writing
    (cache / "manifest.json.tmp").write_bytes(b"{")
    (cache / "README.txt").write_text("not ours: kept")
    report = verify_cache(cache)
    assert report.ok and len(report.warnings) == 3
    with caplog.at_level(logging.WARNING, logger="erpack.store"):
        w = CacheWriter(cache, meta=meta, codec=pipe(), mode="append")
    assert w.removed == ["manifest.json.tmp", "shard-000002.ers", "shard-000003.ers.tmp"]
    assert "removed 3 leftover file(s)" in caplog.text
    assert w.commit_shard(records(1, prefix="c"))["shard"] == "shard-000002.ers"
    w.close()
    assert sorted(p.name for p in cache.iterdir()) == [
        "README.txt", "index", "manifest.json", "shard-000000.ers", "shard-000001.ers", "shard-000002.ers"]
    assert verify_cache(cache).ok and len(CacheReader(cache)) == 9


def test_damaged_manifest(cache):
    (cache / "manifest.json").write_text('{"format": "erpack-cache", "format_version": 99}')
    with pytest.raises(StoreError, match="format_version 99.*upgrade erpack"):
        CacheReader(cache)
    (cache / "manifest.json").write_text("{")
    with pytest.raises(StoreError, match="not valid JSON"):
        CacheReader(cache)


def test_undecodable_record_in_a_batch_is_named(tmp_path, meta):
    """A record whose checksum holds but whose payload does not decode (written garbled): the batch
    error names it, as reading it alone does."""
    with CacheWriter(tmp_path, meta=meta, codec=pipe("int8c")) as w:
        w.commit_shard(records(3, seed=4))
    r = CacheReader(tmp_path, verify_checksums=False)
    info = r.info("doc-1")
    flip(tmp_path / "shard-000000.ers", info["offset"] + 32)  # the codec tag of its payload
    r = CacheReader(tmp_path, verify_checksums=False)
    with pytest.raises(CorruptRecordError, match="record 1.*'doc-1'.*does not decode"):
        r.get_batch(["doc-0", "doc-1", "doc-2"])
