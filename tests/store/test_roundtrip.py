"""Write then read: values, random access, order, append, iteration, stats, the empty cache."""

from __future__ import annotations

import numpy as np
import pytest

from erpack.errors import StoreError
from erpack.store import CacheReader, CacheWriter, MissingDocumentError
from tests.store.conftest import HIDDEN, make_meta, pipe, records


def test_round_trip_random_access_and_order(tmp_path, meta):
    first, second = records(7, seed=1, prefix="a"), records(5, seed=2, prefix="b")
    with CacheWriter(tmp_path / "c", meta=meta, codec=pipe()) as w:
        info = w.commit_shard(first, truncated=["a-3"])
        assert info == {"shard": "shard-000000.ers", "documents": 7, "skipped": 0, "replaced": 0,
                        "tokens": sum(a.shape[0] for _, a in first), "bytes": info["bytes"]}
        w.commit_shard(second)
        assert len(w) == 12 and w.contains("b-4") and "a-0" in w and not w.contains("c-0")
    r = CacheReader(tmp_path / "c")
    assert len(r) == 12
    assert r.ids() == [i for i, _ in first + second]
    for doc_id, arr in reversed(first + second):  # random access, any order
        got = r.get(doc_id)
        assert got.dtype == np.float32 and np.array_equal(got, arr)
    assert [i for i, _ in r] == r.ids()
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(r, first + second))
    assert r.layer == 2 and r.hidden_size == HIDDEN and r.meta == meta
    assert r.manifest["counts"] == {"documents": 12, "tokens": sum(a.shape[0] for _, a in first + second),
                                    "truncated": 1, "records": 12, "bytes": r.manifest["counts"]["bytes"]}
    assert r.info("a-3")["truncated"] and not r.info("a-2")["truncated"]
    assert r.info("b-0")["shard"] == "shard-000001.ers"


def test_encoded_access_matches_codec(tmp_path, meta):
    recs = records(4, seed=3)
    codec = pipe("fp16")
    with CacheWriter(tmp_path, meta=meta, codec=codec) as w:
        w.commit_shard(recs)
    r = CacheReader(tmp_path)
    for (doc_id, arr), (doc_id2, buf, shape) in zip(recs, r.iter_encoded()):
        assert doc_id == doc_id2 and shape == arr.shape
        assert bytes(buf) == bytes(codec.encode(arr))
        buf2, shape2 = r.get_encoded(doc_id)
        assert bytes(buf2) == bytes(buf) and shape2 == shape
        np.testing.assert_allclose(r.get(doc_id), arr, rtol=1e-3, atol=1e-3)


def test_missing_id_names_it(tmp_path, meta):
    with CacheWriter(tmp_path, meta=meta, codec=pipe()) as w:
        w.commit_shard(records(2))
    r = CacheReader(tmp_path)
    with pytest.raises(MissingDocumentError, match="'nope' is not in the cache") as e:
        r.get("nope")
    assert isinstance(e.value, KeyError) and isinstance(e.value, StoreError)
    assert "nope" not in r


def test_append_reopens_and_continues_numbering(tmp_path, meta):
    a, b = records(3, seed=1, prefix="a"), records(3, seed=2, prefix="b")
    with CacheWriter(tmp_path / "c", meta=meta, codec=pipe(), mode="append") as w:  # creates the folder
        w.commit_shard(a)
    with CacheWriter(tmp_path / "c", meta=meta, codec=pipe(), mode="append") as w:
        assert w.contains("a-2") and len(w) == 3
        assert w.commit_shard(b)["shard"] == "shard-000001.ers"
    r = CacheReader(tmp_path / "c")
    assert r.ids() == ["a-0", "a-1", "a-2", "b-0", "b-1", "b-2"]
    assert [s["name"] for s in r.manifest["shards"]] == ["shard-000000.ers", "shard-000001.ers"]


def test_empty_cache_and_empty_commit(tmp_path, meta):
    with CacheWriter(tmp_path, meta=meta, codec=pipe()) as w:
        assert w.commit_shard([]) == {"shard": None, "documents": 0, "skipped": 0, "replaced": 0,
                                      "tokens": 0, "bytes": 0}
    r = CacheReader(tmp_path)
    assert len(r) == 0 and r.ids() == [] and list(r) == []
    assert r.verify().ok
    s = r.stats()
    assert s.documents == 0 and s.bytes_per_token is None


def test_unicode_ids_and_float64_input(tmp_path, meta):
    recs = [("é/ü 文档 🚀", np.ones((2, HIDDEN))), ("x\ny", np.zeros((1, HIDDEN), np.float16))]
    with CacheWriter(tmp_path, meta=meta, codec=pipe()) as w:
        w.commit_shard(recs)
    r = CacheReader(tmp_path)
    assert r.ids() == ["é/ü 文档 🚀", "x\ny"]
    assert np.array_equal(r.get("é/ü 文档 🚀"), np.ones((2, HIDDEN), np.float32))


@pytest.mark.parametrize(
    "bad, match",
    [
        (("d", np.ones((2, HIDDEN + 1), np.float32)), "document 'd'.*hidden=8"),
        (("d", np.ones((0, HIDDEN), np.float32)), "document 'd'.*tokens >= 1"),
        (("d", np.ones((17, HIDDEN), np.float32)), "document 'd': 17 tokens, more than the cache's max_length 16"),
        (("d", np.ones(HIDDEN, np.float32)), "document 'd'.*shape"),
        (("d", np.ones((2, HIDDEN), np.int32)), "document 'd'.*dtype int32"),
        (("", np.ones((2, HIDDEN), np.float32)), "non-empty str"),
        ((7, np.ones((2, HIDDEN), np.float32)), "non-empty str"),
        ("d", "must be a \\(doc_id, array\\) pair"),
    ],
)
def test_bad_records_are_refused_before_writing(tmp_path, meta, bad, match):
    with CacheWriter(tmp_path, meta=meta, codec=pipe()) as w:
        with pytest.raises(StoreError, match=match):
            w.commit_shard(records(2) + [bad])
        assert len(w) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_stats(tmp_path, meta):
    recs = records(6, seed=4)
    with CacheWriter(tmp_path, meta=meta, codec=pipe()) as w:
        w.commit_shard(recs, truncated=["doc-0", "doc-5"])
    s = CacheReader(tmp_path).stats()
    tokens = sum(a.shape[0] for _, a in recs)
    assert (s.documents, s.tokens, s.truncated, s.records, s.dead_records) == (6, tokens, 2, 6, 0)
    assert s.codec == "fp32" and s.layer == 2 and s.model["name"] == "tiny-bert"
    payload = sum(len(pipe().encode(a)) for _, a in recs)  # fp32: 4 bytes a value + the codec's header
    assert s.payload_bytes == payload and s.payload_bits_per_value == 8 * payload / (tokens * HIDDEN)
    disk = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())  # the id index counts
    assert s.bytes_on_disk == disk and s.bytes_per_token == disk / tokens
    assert s.bits_per_value == 8 * disk / (tokens * HIDDEN) and s.bits_per_value > 32
    assert s.shards[0].live == 6


def test_reader_does_not_modify(tmp_path, meta):
    from tests.store.conftest import snapshot

    with CacheWriter(tmp_path, meta=meta, codec=pipe()) as w:
        w.commit_shard(records(3))
    (tmp_path / "shard-000009.ers.tmp").write_bytes(b"leftover")
    before = snapshot(tmp_path)
    r = CacheReader(tmp_path)
    list(r), r.verify(), r.stats()
    r.close()
    assert snapshot(tmp_path) == before


def test_meta_needs_hidden_size(tmp_path):
    with pytest.raises(StoreError, match="hidden_size"):
        CacheWriter(tmp_path, meta={"model": {"name": "x"}}, codec=pipe())
    with pytest.raises(StoreError, match="plain JSON"):
        CacheWriter(tmp_path, meta=make_meta(extra=object()), codec=pipe())


def test_reader_sees_its_snapshot_while_a_writer_appends(tmp_path, meta):
    with CacheWriter(tmp_path, meta=meta, codec=pipe(), mode="append") as w:
        w.commit_shard(records(3, prefix="a"))
        r = CacheReader(tmp_path)
        w.commit_shard(records(3, prefix="b"))
        assert len(r) == 3 and "b-0" not in r and r.get("a-1").shape[1] == HIDDEN
        assert len(CacheReader(tmp_path)) == 6


def test_newer_shard_version_is_refused(tmp_path, meta):
    import struct
    import zlib

    from erpack.store.format import SHARD_VERSION

    with CacheWriter(tmp_path, meta=meta, codec=pipe()) as w:
        w.commit_shard(records(1))
    path = tmp_path / "shard-000000.ers"
    data = bytearray(path.read_bytes())
    newer = SHARD_VERSION + 1
    data[8:10] = struct.pack("<H", newer)
    data[12:16] = struct.pack("<I", zlib.crc32(bytes(data[:12])))
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=f"shard-000000.ers has shard version {newer}, newer .*upgrade erpack"):
        CacheReader(tmp_path).get("doc-0")  # a shard opens on first use


@pytest.mark.parametrize("spec, tolerance", [("fp32", 0.0), ("fp16+zstd:3", 2e-3), ("int8c+zstd:3", 0.1)])
def test_round_trip_through_real_pipelines(tmp_path, meta, spec, tolerance):
    recs = records(6, seed=5)
    codec = pipe(spec)
    with CacheWriter(tmp_path, meta=meta, codec=codec) as w:
        w.commit_shard(recs)
    r = CacheReader(tmp_path)
    assert r.codec.spec == codec.spec and r.codec.get_config() == codec.get_config()
    for doc_id, arr in recs:
        assert bytes(r.get_encoded(doc_id)[0]) == bytes(codec.encode(arr))
        got = r.get(doc_id)
        assert got.dtype == np.float32 and got.shape == arr.shape
        assert np.max(np.abs(got - arr)) <= tolerance * np.max(np.abs(arr))
    assert r.verify().ok
    ids = [doc_id for doc_id, _ in reversed(recs)]
    hidden, mask = r.get_batch(ids)  # one padded batch, any order
    T = max(a.shape[0] for _, a in recs)
    assert hidden.shape == (len(ids), T, HIDDEN) and mask.shape == (len(ids), T) and mask.dtype == np.int64
    for b, doc_id in enumerate(ids):
        t = r.info(doc_id)["tokens"]
        assert np.array_equal(hidden[b, :t], r.get(doc_id)) and not hidden[b, t:].any()
        assert mask[b].tolist() == [1] * t + [0] * (T - t)
    with pytest.raises(MissingDocumentError, match="'nope'"):
        r.get_batch(ids + ["nope"])
