"""A writer appending and reader.stats()/live_masks() take what they need from the id index: the
same answers as through every shard index, without reading the shards the index covers."""

from __future__ import annotations

import pytest

from erpack.errors import StoreError
from erpack.store import CacheReader, CacheWriter, idindex
from erpack.store.manifest import load_manifest
from tests.store.conftest import pipe, records


@pytest.fixture
def small_parts(monkeypatch):
    monkeypatch.setattr(idindex, "PART_BYTES", 600)  # many parts from a few records


def build(where, meta, tail: bool = True) -> CacheWriter | None:
    """A cache with replaced records, truncated ones, records with and without token hashes, and (with
    `tail`) two shards committed after the index was written (their writer never closed)."""
    w = CacheWriter(where, meta=meta, codec=pipe(), mode="append", on_duplicate="replace")
    for s in range(5):
        recs = records(6, seed=s, prefix=f"s{s}")
        w.commit_shard(recs, truncated={recs[0][0]} if s % 2 else (),
                       token_hashes={d: 1000 * s + k + 1 for k, (d, _) in enumerate(recs) if k % 3})
    w.commit_shard(records(4, seed=9, prefix="s1"), truncated={"s1-2"})  # replaces s1-0..s1-3
    w.close()
    if not tail:
        return None
    w = CacheWriter(where, meta=meta, codec=pipe(), mode="append", on_duplicate="replace")
    w.commit_shard(records(3, seed=11, prefix="s3"), token_hashes={"s3-1": 77})  # replaces s3-0..2
    w.commit_shard(records(2, seed=12, prefix="t"))
    return w  # left open: no index over the last two shards


def writer_view(where, meta, use_index: bool) -> tuple[dict, dict, int]:
    w = CacheWriter(where, meta=meta, codec=pipe(), mode="append", use_index=use_index)
    try:
        return dict(w._docs), w.manifest["counts"], w._next
    finally:
        w.close(write_index=False)


@pytest.mark.parametrize("tail", [False, True])
def test_a_writer_opened_through_the_index_knows_what_the_shards_say(tmp_path, meta, small_parts, tail):
    open_writer = build(tmp_path, meta, tail)
    if open_writer is not None:
        open_writer._open_flag = False  # let another writer open the folder: this one "died"
        open_writer._lock.release()
        open_writer._lock = None
    field = load_manifest(tmp_path)["id_index"]
    assert len(field["parts"]) > 3 and field["shards"] == 6
    docs, counts, nxt = writer_view(tmp_path, meta, True)
    assert (docs, counts, nxt) == writer_view(tmp_path, meta, False)
    assert counts == load_manifest(tmp_path)["counts"]
    assert docs["s1-2"][1] == 1 and docs["s1-0"][2] is None and docs["s2-1"][2] == 2002
    if tail:
        assert docs["s3-1"][2] == 77 and docs["s3-0"][2] is None and "t-1" in docs
    w = CacheWriter(tmp_path, meta=meta, codec=pipe(), mode="append", on_duplicate="replace")
    assert w.token_hash("s4-4") == 4005 and w.contains("s0-0") and not w.contains("nope")
    w.commit_shard(records(2, seed=13, prefix="s0"))
    w.close()
    with CacheReader(tmp_path) as a, CacheReader(tmp_path, use_index=False) as b:
        assert a.ids() == b.ids() and len(a) == len(b) == load_manifest(tmp_path)["counts"]["documents"]


def _same_stats(a: CacheReader, b: CacheReader) -> None:
    assert [(s.name, s.count, m.tolist()) for s, m in a.live_masks()] == \
        [(s.name, s.count, m.tolist()) for s, m in b.live_masks()]
    assert {**a.stats().as_dict(), "path": None} == {**b.stats().as_dict(), "path": None}


@pytest.mark.parametrize("tail", [False, True])
def test_stats_and_live_masks_through_the_index_open_no_shard(tmp_path, meta, small_parts, tail):
    open_writer = build(tmp_path, meta, tail)
    try:
        with CacheReader(tmp_path) as a, CacheReader(tmp_path, use_index=False) as b:
            covered = a.manifest["id_index"]["shards"]
            _same_stats(a, b)
            st = a.stats()
            assert st.dead_records == st.records - st.documents > 0 and st.truncated > 0
            assert sorted(a._open) == list(range(covered, len(a._specs)))  # only the shards past the index
    finally:
        if open_writer is not None:
            open_writer.close()


def test_a_remote_writer_and_stats_through_the_index(s3_bucket, tmp_path, meta, small_parts):
    url = f"{s3_bucket}/cache"
    build(url, meta, tail=False)
    build(tmp_path, meta, tail=False)
    assert writer_view(url, meta, True) == writer_view(tmp_path, meta, True) == writer_view(url, meta, False)
    with CacheReader(url) as a, CacheReader(tmp_path, use_index=False) as b:
        assert [(s.name, m.tolist()) for s, m in a.live_masks()] == [(s.name, m.tolist()) for s, m in b.live_masks()]
        got, want = a.stats().as_dict(), b.stats().as_dict()
        assert got.pop("path") == url and {**want, "path": None} == {**got, "path": None}
        assert not a._open


@pytest.mark.slow
def test_opening_a_writer_on_s3_costs_a_handful_of_requests_whatever_the_size(s3_server, s3_bucket, tmp_path):
    """200 and 2,000 one-record shards on the S3 server: opening a writer to append (and closing it) reads
    the manifest and the index parts, never a shard, and lists nothing (no mark says a writer died)."""
    from tools.bench_open import META, build_cache

    counts, lists = {}, {}
    for n in (200, 2000):
        url = f"{s3_bucket}/c{n}"
        build_cache(url, n, tmp_path / f"c{n}", into_moto=n > 200)
        before = s3_server.requests()
        w = CacheWriter(url, meta=META, codec=pipe(), mode="append")
        assert len(w) == n and w.contains(f"doc-{n - 1:07d}") and w.manifest["counts"]["records"] == n
        w.close()
        log = s3_server.log[before:]
        counts[n] = len(log)
        assert not any(".ers" in path for _, path, _ in log), log  # no shard read
        lists[n] = sum(1 for method, path, _ in log if method == "GET" and "/" not in path.strip("/"))
    # manifest HEAD x2 + GET, the part, a HEAD + 1-key LIST per mark (absent), the session mark PUT + DELETE
    assert counts[200] == counts[2000] <= 10 and lists[200] == lists[2000] == 2, (counts, lists)


def test_live_records_hold_what_the_shards_say(tmp_path, meta, small_parts):
    build(tmp_path, meta, tail=False)
    with CacheReader(tmp_path) as r:
        shards = r.live_records()
        assert not r._open and [s.name for s in shards] == [s["name"] for s in r.manifest["shards"]]
        for k, got in enumerate(shards):
            shard = r.open_shard(k)
            assert (got.count, got.size) == (shard.count, shard.size)
            rec = got.records
            assert got.ids == [shard.ids[i] for i in rec.tolist()]
            assert got.ids == [d for d in shard.ids if r.info(d)["shard"] == got.name]
            assert got.tokens.tolist() == shard.entries["tokens"][rec].tolist()
            assert got.sizes.tolist() == shard.record_size()[rec].tolist()
            assert got.flags.tolist() == shard.entries["flags"][rec].tolist()
            assert got.token_hashes.tolist() == shard.hashes[rec].tolist()
        with pytest.raises(StoreError, match="there is no shard 99"):
            r.open_shard(99)


@pytest.fixture(params=["memory", "s3"])
def url(request, tmp_path) -> str:
    if request.param == "memory":
        return f"memory://erpack-marks/{tmp_path.name}/cache"
    return f"{request.getfixturevalue('s3_bucket')}/cache"


def test_a_remote_writer_lists_for_leftovers_only_when_a_mark_says_so(url, meta):
    """A normal close leaves no mark, so the next writer does not list the folder; a writer that died
    (or left by an exception) and write_shard's uncommitted shards leave one, and the next writer
    removes what they left."""
    from erpack.store.location import open_location
    from erpack.store.manifest import shard_name
    from erpack.store.writer import MARKS, PUBLISHED_MARK, SESSION_MARK, write_shard

    loc = open_location(url)
    with CacheWriter(url, meta=meta, codec=pipe()) as w:
        w.commit_shard(records(2))
        assert loc.exists(SESSION_MARK)
    assert not any(loc.exists(m) for m in MARKS)
    dead = CacheWriter(url, meta=meta, codec=pipe(), mode="append")  # dies after publishing, before committing
    write_shard(url, shard_name(dead._next), records(1, prefix="q"), pipe(), dead.limits, _mark=False)
    del dead
    w = CacheWriter(url, meta=meta, codec=pipe(), mode="append")
    assert w.removed == ["shard-000001.ers"] and loc.exists(SESSION_MARK) and not loc.exists(PUBLISHED_MARK)
    with pytest.raises(RuntimeError), w:
        raise RuntimeError("the driver failed")
    assert loc.exists(SESSION_MARK)  # left by an exception: the next writer looks
    with CacheWriter(url, meta=meta, codec=pipe(), mode="append") as w:
        assert w.removed == []
        write_shard(url, shard_name(0, tag="lost"), records(1, prefix="l"), pipe(), w.limits)  # never committed
    assert loc.exists(PUBLISHED_MARK) and not loc.exists(SESSION_MARK)
    with CacheWriter(url, meta=meta, codec=pipe(), mode="append") as w:
        assert w.removed == ["shard-lost-000000.ers"] and len(w) == 2
    assert sorted(loc.listdir()) == ["manifest.json", "shard-000000.ers"]
