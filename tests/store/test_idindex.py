"""The global id index: the reader through it equals the reader through the shard indexes, appends
rewrite only the parts they touch, damage is named, and the part layout is what idindex.py documents."""

from __future__ import annotations

import hashlib
import json
import struct
import threading
import zlib

import numpy as np
import pytest

from erpack.errors import CorruptManifestError, CorruptRecordError, StoreError
from erpack.store import CacheReader, CacheWriter, MissingDocumentError, idindex, verify_cache
from erpack.store.location import open_location
from erpack.store.manifest import MANIFEST, dump_manifest, load_manifest
from erpack.store.writer import rebuild_index
from tests.store.conftest import pipe, records


@pytest.fixture
def small_parts(monkeypatch):
    monkeypatch.setattr(idindex, "PART_BYTES", 600)  # about 8 entries a part: many parts from a few records


def write(path, meta, batches, on_duplicate="replace", close=True):
    w = CacheWriter(path, meta=meta, codec=pipe(), mode="append", on_duplicate=on_duplicate)
    for recs in batches:
        w.commit_shard(recs, token_hashes={d: k + 1 for k, (d, _) in enumerate(recs)})
    if close:
        w.close()
    return w


def same_view(a: CacheReader, b: CacheReader) -> None:
    assert a.ids() == b.ids() and len(a) == len(b)
    for doc_id in b.ids():
        assert a.info(doc_id) == b.info(doc_id) and a.token_hash(doc_id) == b.token_hash(doc_id)
        np.testing.assert_array_equal(a.get(doc_id), b.get(doc_id))
    assert [d for d, _ in a] == b.ids()
    assert [(s.name, m.tolist()) for s, m in a.live_masks()] == [(s.name, m.tolist()) for s, m in b.live_masks()]
    assert {**a.stats().as_dict(), "path": None} == {**b.stats().as_dict(), "path": None}


def test_reader_through_the_index_equals_the_shard_indexes(tmp_path, meta, small_parts):
    write(tmp_path, meta, [records(7, seed=s, prefix=f"s{s}") for s in range(6)])
    write(tmp_path, meta, [records(5, seed=9, prefix="s2")])  # replaces s2-0..s2-4
    field = load_manifest(tmp_path)["id_index"]
    assert field["shards"] == 7 and field["documents"] == 42 and len(field["parts"]) > 3
    with CacheReader(tmp_path) as a, CacheReader(tmp_path, use_index=False) as b:
        assert a.has_index and not b.has_index
        assert not a._open  # opening read the manifest only
        same_view(a, b)
        assert "nope" not in a and 3 not in a
        with pytest.raises(MissingDocumentError, match="'nope' is not in the cache"):
            a.get("nope")
        assert a.verify().ok


def test_an_append_rewrites_only_the_parts_it_touches(tmp_path, meta, small_parts):
    write(tmp_path, meta, [records(40, prefix="a")])
    first = load_manifest(tmp_path)["id_index"]["parts"]
    write(tmp_path, meta, [records(1, prefix="b")])
    second = load_manifest(tmp_path)["id_index"]["parts"]
    kept = [p for p in second if p in first]
    assert len(kept) == len(first) - 1 and len(second) in (len(first), len(first) + 1)
    write(tmp_path, meta, [records(1, prefix="c")])
    on_disk = {f"index/{p.name}" for p in (tmp_path / "index").iterdir()}
    named = {p["name"] for p in load_manifest(tmp_path)["id_index"]["parts"]} | {p["name"] for p in second}
    assert on_disk == named  # the generation before the previous one is removed
    with CacheReader(tmp_path) as r:
        assert len(r) == 42 and r.verify().ok


def test_shards_after_the_index_are_read_the_old_way(tmp_path, meta, small_parts):
    write(tmp_path, meta, [records(10, prefix="a"), records(10, prefix="b")])
    w = write(tmp_path, meta, [records(3, seed=4, prefix="a"), records(2, prefix="z")], close=False)
    try:  # the writer died before close: two shards the index does not cover
        with CacheReader(tmp_path) as a, CacheReader(tmp_path, use_index=False) as b:
            assert a.manifest["id_index"]["shards"] == 2 and len(a._specs) == 4
            same_view(a, b)
            assert len(a) == 22 and a.ids()[-5:] == ["a-0", "a-1", "a-2", "z-0", "z-1"]
    finally:
        w.close()
    assert load_manifest(tmp_path)["id_index"]["shards"] == 4


def test_a_damaged_part_is_named_and_rebuilt(tmp_path, meta, small_parts):
    write(tmp_path, meta, [records(30, prefix="a")])
    part = load_manifest(tmp_path)["id_index"]["parts"][1]
    data = bytearray((tmp_path / part["name"]).read_bytes())
    data[40] ^= 1
    (tmp_path / part["name"]).write_bytes(bytes(data))
    r = CacheReader(tmp_path)  # opening reads no part
    with pytest.raises(StoreError, match=f"index part .*{part['name']} fails its sha256.*rebuild_index"):
        r.ids()
    report = r.verify()
    assert not report.ok and report.failures[0].shard == "index"
    assert [f.shard for f in verify_cache(tmp_path).failures] == ["index"]  # the shards are fine
    rebuild_index(tmp_path)
    with CacheReader(tmp_path) as a, CacheReader(tmp_path, use_index=False) as b:
        same_view(a, b)
        assert a.verify().ok
    (tmp_path / load_manifest(tmp_path)["id_index"]["parts"][0]["name"]).unlink()
    with pytest.raises(StoreError, match="listed in the manifest but missing"):
        CacheReader(tmp_path).ids()


def test_without_the_index_opening_still_checks_every_shard(tmp_path, meta):
    write(tmp_path, meta, [records(3)])
    (tmp_path / "shard-000000.ers").unlink()
    with pytest.raises(StoreError, match="shard-000000.ers is listed .* but missing"):
        CacheReader(tmp_path, use_index=False)
    r = CacheReader(tmp_path)  # through the index: found at the first read
    with pytest.raises(StoreError, match="shard-000000.ers is listed .* but missing"):
        r.get("doc-0")


@pytest.mark.parametrize("change", [
    {"version": 2}, {"shards": 9}, {"documents": 99}, {"parts": "x"},
    {"parts": [{"name": "index/../x.eri", "bytes": 1, "sha256": "0" * 64, "first": 0, "last": 0, "documents": 1}]},
])
def test_a_malformed_field_is_refused(tmp_path, meta, change):
    write(tmp_path, meta, [records(3)])
    manifest = json.loads((tmp_path / MANIFEST).read_bytes())
    manifest["id_index"].update(change)
    (tmp_path / MANIFEST).write_bytes(dump_manifest(manifest))  # resealed: only the field is wrong
    with pytest.raises(CorruptManifestError, match="id_index"):
        CacheReader(tmp_path)


def test_part_follows_the_documented_layout(tmp_path, meta):
    """A part read with nothing but struct, zlib and hashlib, as idindex.py's docstring describes it."""
    recs = records(3, prefix="ü")
    write(tmp_path, meta, [recs])
    field = load_manifest(tmp_path)["id_index"]
    (spec,) = field["parts"]
    data = (tmp_path / spec["name"]).read_bytes()
    assert (len(data), hashlib.sha256(data).hexdigest()) == (spec["bytes"], spec["sha256"])
    magic, version, reserved, count, blob_len, reserved2, crc = struct.unpack_from("<8sHHIQII", data, 0)
    assert (magic, version, reserved, count, reserved2, crc) == (b"ERPKIDXP", 1, 0, 3, 0, zlib.crc32(data[:28]))
    blob = data[32 + 64 * count : 32 + 64 * count + blob_len]
    assert len(data) == 32 + 64 * count + blob_len + (-(32 + 64 * count + blob_len) % 8)
    shard = (tmp_path / "shard-000000.ers").read_bytes()
    start, keys = 0, []
    for j in range(count):
        key, offset, length, plen, thash, s, rec, tokens, flags, rcrc, id_end = struct.unpack_from(
            "<QQQQQIIIIII", data, 32 + 64 * j)
        doc_id = blob[start:id_end].decode()
        start = id_end
        assert key == int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=8).digest(), "little")
        assert (s, doc_id, thash) == (0, recs[rec][0], rec + 1)
        head = struct.unpack_from("<4sIIIQII", shard, offset)
        assert head[0] == b"ERPR" and (head[2], head[4], head[1], head[6]) == (tokens, plen, flags, rcrc)
        assert length == 32 + plen + len(doc_id.encode()) + (-(32 + plen + len(doc_id.encode())) % 8)
        keys.append(key)
    assert keys == sorted(keys) and (keys[0], keys[-1]) == (spec["first"], spec["last"])


@pytest.mark.slow
def test_open_and_get_on_s3_cost_a_handful_of_requests_whatever_the_size(s3_server, s3_bucket, tmp_path):
    """A synthetic cache of 200 and of 2,000 one-record shards on the S3 server: opening and one get
    cost the same few requests (manifest, one index part, one record range)."""
    from tools.bench_open import build_cache, open_and_get

    counts = {}
    for n in (200, 2000):
        url = f"{s3_bucket}/c{n}"
        ids = build_cache(url, n, tmp_path / f"c{n}", into_moto=n > 200)  # 200 real PUTs, then faster
        before = s3_server.requests()
        doc_id, x = open_and_get(url, ids[n // 2 + 1])
        counts[n] = s3_server.requests() - before
        assert doc_id == ids[n // 2 + 1] and x.shape[1] == 8
        assert load_manifest(tmp_path / f"c{n}")["id_index"]["shards"] == n
    assert counts[200] == counts[2000] <= 6, counts


@pytest.fixture(params=["memory", "s3"])
def url(request, tmp_path) -> str:
    if request.param == "memory":
        return f"memory://erpack-index/{tmp_path.name}/cache"
    return f"{request.getfixturevalue('s3_bucket')}/cache"


def test_a_remote_reader_equals_a_local_one(url, tmp_path, meta, small_parts):
    batches = [records(6, seed=s, prefix=f"s{s}") for s in range(4)] + [records(3, seed=7, prefix="s1")]
    write(url, meta, batches[:3])
    write(url, meta, batches[3:])
    write(tmp_path / "local", meta, batches[:3])
    write(tmp_path / "local", meta, batches[3:])
    assert load_manifest(url)["id_index"] == load_manifest(tmp_path / "local")["id_index"]
    with CacheReader(url) as a, CacheReader(tmp_path / "local") as b:
        assert a.path is None and str(a.location) == url and b.path == tmp_path / "local"
        same_view(a, b)
        hidden, mask = a.get_batch(["s3-5", "s0-0", "s1-2"])
        want = b.get_batch(["s3-5", "s0-0", "s1-2"])
        np.testing.assert_array_equal(hidden, want[0])
        np.testing.assert_array_equal(mask, want[1])
        assert a.verify().ok
        with CacheReader(url, use_index=False) as c:  # every shard index read at open, 16 at a time
            same_view(c, b)
    with CacheReader(url, shard_cache=tmp_path / "shards") as c:
        np.testing.assert_array_equal(c.get("s2-1"), CacheReader(tmp_path / "local").get("s2-1"))
        assert len(list((tmp_path / "shards").iterdir())) == 1  # that one shard, downloaded and checked


def test_a_damaged_remote_record_is_named_by_its_url(tmp_path, meta):
    url = f"memory://erpack-index/{tmp_path.name}/cache"
    write(url, meta, [records(4)])
    loc = open_location(url)
    info = CacheReader(url).info("doc-2")
    data = bytearray(loc.read("shard-000000.ers"))
    data[info["offset"] + 40] ^= 1  # in the payload
    loc.fs.pipe_file(f"{loc.root}/shard-000000.ers", bytes(data))
    r = CacheReader(url)
    with pytest.raises(CorruptRecordError, match=f"shard {url}/shard-000000.ers, record 2 .*'doc-2'.*crc32"):
        r.get("doc-2")
    with pytest.raises(CorruptRecordError, match="record 2"):
        r.get_batch(["doc-0", "doc-2"])
    np.testing.assert_array_equal(r.get("doc-1"), records(4)[1][1])


def test_an_exception_in_the_with_block_writes_no_index(tmp_path, meta):
    write(tmp_path, meta, [records(3, prefix="a")])
    with pytest.raises(RuntimeError), CacheWriter(tmp_path, meta=meta, codec=pipe(), mode="append") as w:
        w.commit_shard(records(2, prefix="b"))
        raise RuntimeError("the caller failed")
    assert load_manifest(tmp_path)["id_index"]["shards"] == 1  # the new shard is committed, not indexed
    with CacheReader(tmp_path) as r:
        assert r.ids() == ["a-0", "a-1", "a-2", "b-0", "b-1"] and len(r) == 5


def test_a_small_shard_budget_serves_batches_and_threads(tmp_path, meta):
    batches = [records(3, seed=s, prefix=f"s{s}") for s in range(8)]
    write(tmp_path, meta, batches)
    want = {d: a for recs in batches for d, a in recs}
    ids = list(want)[::-1]
    with CacheReader(tmp_path, max_open_shards=2) as r:
        hidden, mask = r.get_batch(ids)  # every shard opened in turn, most forgotten before decoding
        for k, doc_id in enumerate(ids):
            np.testing.assert_array_equal(hidden[k, : len(want[doc_id])], want[doc_id])
        assert len(r._open) == 2 and [d for d, _ in r] == list(want)

        def read_all(out: list) -> None:
            out += [np.array_equal(r.get(d), want[d]) for d in ids * 5]

        results: list = []
        threads = [threading.Thread(target=read_all, args=(results,)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == 3 * 5 * len(ids) and all(results)


def test_a_pass_over_a_remote_cache_reads_ahead(s3_server, s3_bucket, meta):
    """Iteration through the S3 server: a few requests per shard (its tail and read-ahead windows),
    not one per record; a get_batch: one range per record, fetched concurrently."""
    url = f"{s3_bucket}/cache"
    write(url, meta, [records(60, seed=s, prefix=f"s{s}") for s in range(3)])
    before = s3_server.requests()
    with CacheReader(url) as r:
        assert len([d for d, _ in r]) == 180
        passed = s3_server.requests() - before
        assert passed <= 2 + 1 + 3 * 3, s3_server.log[before:]  # manifest, the part, <= 3 per shard
    before = s3_server.requests()
    with CacheReader(url) as r:
        r.get_batch(["s0-1", "s1-7", "s2-59"])
    assert s3_server.requests() - before == 2 + 1 + 3  # manifest, the part, one range per record
