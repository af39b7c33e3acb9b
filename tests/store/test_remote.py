"""The write side and shard reads on any location: a local folder, memory:// and the S3 server on
loopback (moto, real HTTP; no mocks). write_shard + commit_entries (distributed writers), leftovers,
partial uploads, range reads and their request counts, the shard cache, verify on URLs."""

from __future__ import annotations

import numpy as np
import pytest

from erpack.errors import CorruptRecordError, StoreError
from erpack.store import CacheWriter, verify_cache
from erpack.store.location import open_location
from erpack.store.manifest import MANIFEST, load_manifest, shard_name
from erpack.store.shard import RecordLimits, ShardFile, decode_payload
from erpack.store.verify import seal_cache
from erpack.store.writer import write_shard
from tests.store.conftest import HIDDEN, make_meta, pipe, records

LIMITS = RecordLimits(HIDDEN, 16)


@pytest.fixture(params=["local", "memory", "s3"])
def where(request, tmp_path) -> str:
    """A cache location that does not exist yet, as a path or URL string."""
    if request.param == "local":
        return str(tmp_path / "cache")
    if request.param == "memory":
        return f"memory://erpack-store/{tmp_path.name}/cache"
    return f"{request.getfixturevalue('s3_bucket')}/cache"


def read_back(where, codec=None) -> dict:
    """{id: float32 (T, H)} of the live records, read shard by shard from the manifest."""
    manifest = load_manifest(where)
    codec = codec or pipe()
    out = {}
    for entry in manifest["shards"]:
        shard = ShardFile(open_location(where), entry["name"], expected_size=entry["bytes"], limits=LIMITS)
        try:
            for i, doc_id in enumerate(shard.ids):
                payload, shape, _ = shard.read(i)
                out[doc_id] = decode_payload(codec, shard, i, payload, shape).copy()
        finally:
            shard.close()
    return out


def same(got: dict, want: list) -> bool:
    return list(got) == [d for d, _ in want] and all(np.array_equal(got[d], a) for d, a in want)


def test_write_then_read_back(where, meta):
    first, second = records(7, seed=1, prefix="a"), records(5, seed=2, prefix="b")
    with CacheWriter(where, meta=meta, codec=pipe()) as w:
        assert w.commit_shard(first, truncated=["a-3"], token_hashes={"a-1": 7})["shard"] == "shard-000000.ers"
    with CacheWriter(where, meta=meta, codec=pipe(), mode="append") as w:
        assert len(w) == 7 and w.token_hash("a-1") == 7 and w.token_hash("a-2") is None
        assert w.commit_shard(second)["shard"] == "shard-000001.ers"
    assert same(read_back(where), first + second)
    manifest = load_manifest(where)
    assert manifest["counts"]["documents"] == 12 and manifest["counts"]["truncated"] == 1
    assert [sorted(e) for e in manifest["shards"]] == [["bytes", "documents", "name", "sha256", "tokens",
                                                        "truncated"]] * 2
    assert verify_cache(where).ok


def test_commit_entries_of_tagged_shards(where, meta):
    with CacheWriter(where, meta=meta, codec=pipe(), on_duplicate="error") as w:
        w.commit_shard(records(3, seed=0, prefix="x"))
        # two "workers" publish shards under their own tags; the driver lists them in one manifest write
        parts = [records(4, seed=s, prefix=f"w{s}") for s in (1, 2, 3)]
        entries = [write_shard(where, shard_name(k, tag=f"w{k % 2}r7"), recs, pipe(), LIMITS,
                               truncated=[recs[0][0]], token_hashes={recs[1][0]: 99})
                   for k, recs in enumerate(parts)]
        assert [e["name"] for e in entries] == ["shard-w0r7-000000.ers", "shard-w1r7-000001.ers",
                                                "shard-w0r7-000002.ers"]
        assert entries[0]["ids"] == [d for d, _ in parts[0]] and entries[0]["truncated"] == 1
        assert len(w) == 3  # published but not committed: not in the cache yet
        info = w.commit_entries(entries)
        assert info == {"shards": 3, "documents": 12, "replaced": 0, "tokens": sum(e["tokens"] for e in entries),
                        "bytes": sum(e["bytes"] for e in entries)}
        assert len(w) == 15 and w.token_hash("w2-1") == 99
        assert w.commit_shard(records(2, seed=9, prefix="y"))["shard"] == "shard-000001.ers"
        with pytest.raises(StoreError, match="already listed"):
            w.commit_entries(entries[:1])
        dup = write_shard(where, shard_name(0, tag="late"), records(2, seed=1, prefix="w1"), pipe(), LIMITS)
        with pytest.raises(StoreError, match="cannot be un-written, so nothing was committed"):
            w.commit_entries([dup])
    got = read_back(where)
    assert len(got) == 17 and np.array_equal(got["w3-2"], parts[2][2][1])
    manifest = load_manifest(where)
    assert manifest["counts"]["truncated"] == 3 and len(manifest["shards"]) == 5
    assert verify_cache(where).ok
    with CacheWriter(where, meta=meta, codec=pipe(), mode="append") as w:  # reopen: ids from the indexes
        assert len(w) == 17 and w.token_hash("w1-1") == 99
        assert w.removed == ["shard-late-000000.ers"]  # the refused shard was a leftover


def test_commit_entries_replace_and_index_fallback(where, meta):
    with CacheWriter(where, meta=meta, codec=pipe(), on_duplicate="replace") as w:
        w.commit_shard(records(3, seed=0))
        new = records(2, seed=5)  # doc-0, doc-1 again, new values
        entry = write_shard(where, shard_name(0, tag="b"), new, pipe(), LIMITS, truncated=["doc-1"])
        slim = {k: entry[k] for k in ("name", "documents", "tokens", "truncated", "bytes", "sha256")}
        assert w.commit_entries([slim])["replaced"] == 2  # ids read back from the shard's index
        assert len(w) == 3
    got = read_back(where)
    assert np.array_equal(got["doc-0"], new[0][1]) and load_manifest(where)["counts"]["truncated"] == 1
    assert verify_cache(where).ok


def test_commit_entries_checks_the_published_shard(where, meta):
    with CacheWriter(where, meta=meta, codec=pipe()) as w:
        entry = write_shard(where, shard_name(1, tag="t"), records(2), pipe(), LIMITS)
        with pytest.raises(StoreError, match="is missing"):
            w.commit_entries([{**entry, "name": shard_name(2, tag="t")}])
        with pytest.raises(StoreError, match="its entry says"):
            w.commit_entries([{**entry, "bytes": entry["bytes"] + 8}])
        with pytest.raises(StoreError, match="disagree with its counts"):
            w.commit_entries([{**entry, "documents": 3}])
        assert load_manifest(where)["shards"] == []  # nothing was committed
        with pytest.raises(StoreError, match="never overwritten"):
            write_shard(where, entry["name"], records(1), pipe(), LIMITS)


def test_leftovers_removed_on_reopen(where, meta):
    loc = open_location(where)
    with CacheWriter(where, meta=meta, codec=pipe()) as w:
        w.commit_shard(records(2))
        write_shard(where, shard_name(0, tag="dead"), records(2, prefix="z"), pipe(), LIMITS)  # never committed
        write_shard(where, shard_name(5), records(1, prefix="q"), pipe(), LIMITS)
    loc.write_atomic("README.txt", b"mine")
    with CacheWriter(where, meta=meta, codec=pipe(), mode="append") as w:
        assert w.removed == ["shard-000005.ers", "shard-dead-000000.ers"]
        assert w.commit_shard(records(1, prefix="n"))["shard"] == "shard-000001.ers"
    assert loc.listdir() == ["README.txt", MANIFEST, "shard-000000.ers", "shard-000001.ers"]


def test_failing_record_mid_shard_publishes_nothing(where, meta, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # a remote shard is built in the temp folder
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)

    def stream():
        yield from records(3)
        raise RuntimeError("the encoder died mid-shard")

    name = shard_name(0, tag="w1")
    with CacheWriter(where, meta=meta, codec=pipe()):
        pass
    with pytest.raises(RuntimeError, match="died mid-shard"):
        write_shard(where, name, stream(), pipe(), LIMITS)
    bad = records(2) + [("doc-9", np.zeros((3, HIDDEN + 1), np.float32))]
    with pytest.raises(StoreError, match="must have shape"):
        write_shard(where, name, bad, pipe(), LIMITS)
    loc = open_location(where)
    assert not loc.exists(name) and loc.listdir() == [MANIFEST]  # no object under the final key, no .tmp
    assert list((tmp_path / "tmp").iterdir()) == []  # the local temp file is gone too


def test_remote_read_request_counts(s3_bucket, s3_server, meta):
    where = f"{s3_bucket}/cache"
    big = records(600, seed=4, hidden=HIDDEN)  # ~25 kB of index: more than one record per request
    with CacheWriter(where, meta=meta, codec=pipe()) as w:
        w.commit_shard(big)
    entry = load_manifest(where)["shards"][0]
    loc = open_location(where)
    before = s3_server.requests()
    shard = ShardFile(loc, entry["name"], expected_size=entry["bytes"], limits=LIMITS)
    opened = s3_server.requests() - before
    payload, shape, _ = shard.read(300)
    one = s3_server.requests() - before - opened
    assert opened == 1 and one == 1, (opened, one)  # tail (trailer + index), then the record's range
    assert np.array_equal(decode_payload(pipe(), shard, 300, payload, shape), big[300][1])
    ranges = [r for _, _, r in s3_server.log[-2:]]
    assert all(r.startswith("bytes=") for r in ranges)
    before = s3_server.requests()
    got = [decode_payload(pipe(), shard, i, *shard.read(i)[:2]) for i in range(shard.count)]  # a sequential pass
    assert s3_server.requests() - before <= 3  # record 0 with the header, then one read-ahead window
    assert all(np.array_equal(a, b) for a, (_, b) in zip(got, big))
    shard.close()


def test_large_index_takes_two_reads(s3_bucket, s3_server, meta):
    where = f"{s3_bucket}/cache"
    many = [(f"a-long-document-identifier-{i:08d}", np.ones((1, HIDDEN), np.float32)) for i in range(1500)]
    with CacheWriter(where, meta=meta, codec=pipe()) as w:
        w.commit_shard(many)
    entry = load_manifest(where)["shards"][0]
    before = s3_server.requests()
    shard = ShardFile(open_location(where), entry["name"], expected_size=entry["bytes"])
    assert s3_server.requests() - before == 2 and shard.count == 1500  # 1500 * 72 bytes of index > 64 KiB
    assert shard.ids[-1] == many[-1][0] and shard.version == 2


def test_prefetch_holds_one_window(where, meta):
    recs = records(20, seed=3)
    with CacheWriter(where, meta=meta, codec=pipe()) as w:
        w.commit_shard(recs)
    entry = load_manifest(where)["shards"][0]
    shard = ShardFile(open_location(where), entry["name"], expected_size=entry["bytes"], limits=LIMITS,
                      readahead=0)
    fetched = shard.prefetch(5, 12)
    assert (fetched > 0) == shard.remote and shard.remote == (not where.startswith("/"))
    for i in (11, 5, 8, 0, 19):
        assert np.array_equal(decode_payload(pipe(), shard, i, *shard.read(i)[:2]), recs[i][1])
    assert shard.header_checked


def test_shard_cache_downloads_once_and_checks_sha(s3_bucket, s3_server, meta, tmp_path):
    where = f"{s3_bucket}/cache"
    recs = records(30, seed=6)
    with CacheWriter(where, meta=meta, codec=pipe()) as w:
        w.commit_shard(recs)
    entry = load_manifest(where)["shards"][0]
    loc = open_location(where)
    cache = tmp_path / "shards"
    for _ in range(2):
        shard = ShardFile(loc, entry["name"], expected_size=entry["bytes"], limits=LIMITS, shard_cache=cache,
                          sha256=entry["sha256"])
        assert not shard.remote and shard.where == f"{where}/{entry['name']}"
        before = s3_server.requests()
        assert np.array_equal(decode_payload(pipe(), shard, 7, *shard.read(7)[:2]), recs[7][1])
        assert s3_server.requests() == before  # mapped: no request
        shard.close()
    assert [p.name for p in cache.iterdir()] == [f"{entry['sha256']}.ers"]
    with pytest.raises(StoreError, match="does not match the manifest"):
        ShardFile(loc, entry["name"], expected_size=entry["bytes"], shard_cache=tmp_path / "other", sha256="0" * 64)
    assert list((tmp_path / "other").iterdir()) == []  # nothing half-downloaded left


def test_changed_byte_detected_remotely(where, meta):
    with CacheWriter(where, meta=meta, codec=pipe()) as w:
        w.commit_shard(records(5, seed=2))
        w.commit_shard(records(5, seed=3, prefix="b"))
    loc = open_location(where)
    entry = load_manifest(where)["shards"][1]
    data = bytearray(loc.read(entry["name"]))
    data[60] ^= 0x10  # inside record 0's payload
    loc.delete(entry["name"])
    loc.write_atomic(entry["name"], bytes(data))
    report = verify_cache(where)
    assert not report.ok and report.shards[0].ok and report.shards[1].sha256_ok is False
    assert [(f.shard, f.record_index) for f in report.failures] == [(entry["name"], 0)]
    shard = ShardFile(loc, entry["name"], expected_size=entry["bytes"], limits=LIMITS)
    with pytest.raises(CorruptRecordError, match=f"{entry['name']}, record 0 .*crc32 mismatch"):
        shard.read(0)
    if not loc.is_local:
        assert where in str(report.failures[0].error) or report.failures[0].error.startswith("crc32")
    loc.delete(entry["name"])
    loc.write_atomic(entry["name"], bytes(data[:-8]))  # truncated
    with pytest.raises(CorruptRecordError, match="truncated after it was committed"):
        ShardFile(loc, entry["name"], expected_size=entry["bytes"])
    loc.delete(entry["name"])
    report = verify_cache(where)
    assert [f.error for f in report.failures][0] == "listed in the manifest but missing"
    with pytest.raises(StoreError, match="listed in .* but missing"):
        ShardFile(loc, entry["name"], expected_size=entry["bytes"])


def test_seal_and_stats_on_urls(where, meta):
    with CacheWriter(where, meta=meta, codec=pipe()) as w:
        w.commit_shard(records(4))
    report = seal_cache(where)
    assert report.ok and report.sealed and report.sealed_now is False
    assert report.path == where and verify_cache(where, decode=False).ok


def test_storage_options_reach_the_file_system(s3_bucket, s3_server, meta, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    with pytest.raises(StoreError):
        CacheWriter(f"{s3_bucket}/c", meta=meta, codec=pipe(),
                    storage_options={"endpoint_url": "http://127.0.0.1:9", "config_kwargs": {
                        "connect_timeout": 1, "retries": {"max_attempts": 1}}})
    with CacheWriter(f"{s3_bucket}/c", meta=make_meta(), codec=pipe(),
                     storage_options={"endpoint_url": s3_server.endpoint}) as w:
        w.commit_shard(records(2))
    assert load_manifest(f"{s3_bucket}/c", {"endpoint_url": s3_server.endpoint})["counts"]["documents"] == 2


def test_commit_entries_sees_shards_other_processes_published(s3_bucket, meta):
    """The driver lists the cache when it opens; workers (other processes, other clients) publish
    afterwards: the driver must see their shards, not its cached listing."""
    where = f"{s3_bucket}/cache"
    with CacheWriter(where, meta=meta, codec=pipe(), mode="append") as w:
        w.commit_shard(records(2, prefix="d"))
    with CacheWriter(where, meta=meta, codec=pipe(), mode="append") as w:  # lists the folder on open
        worker = open_location(where, {"skip_instance_cache": True})  # its own client, like another process
        entry = write_shard(worker, shard_name(0, tag="w0"), records(3, prefix="w"), pipe(), LIMITS)
        assert w.commit_entries([entry])["documents"] == 3
        with pytest.raises(StoreError, match="never overwritten"):
            write_shard(where, entry["name"], records(1, prefix="v"), pipe(), LIMITS)
    assert len(read_back(where)) == 5


def test_missing_bucket_is_named_not_created(s3_server, meta):
    url = "s3://erpack-no-such-bucket-h1/cache"
    with pytest.raises(StoreError, match="bucket 'erpack-no-such-bucket-h1' does not exist"):
        CacheWriter(url, meta=meta, codec=pipe())
    with pytest.raises(StoreError, match="bucket 'erpack-no-such-bucket-h1' does not exist"):
        write_shard(url, shard_name(0, tag="w"), records(1), pipe(), LIMITS)
    assert not open_location("s3://erpack-no-such-bucket-h1").exists()


def test_seal_an_old_manifest_on_a_url(where, meta):
    from erpack.store.manifest import dump_manifest

    with CacheWriter(where, meta=meta, codec=pipe()) as w:
        w.commit_shard(records(3))
    old = {k: v for k, v in load_manifest(where).items() if k != "checksum"}
    open_location(where).write_atomic(MANIFEST, dump_manifest({**old, "format_version": 1}))
    report = verify_cache(where)
    assert report.ok and not report.sealed and "format version 1" in report.warnings[-1]
    report = seal_cache(where)
    assert report.ok and report.sealed_now and load_manifest(where)["format_version"] == 3


@pytest.mark.parametrize("tail", [64, 4096])
def test_every_flipped_byte_is_caught_by_range_reads(tmp_path, meta, monkeypatch, tail):
    """A remote shard read by ranges (tail=64: trailer, index and header each fetched apart) checks every
    byte a mapped one does: flip each byte in turn; opening it and reading every record must refuse."""
    import erpack.store.shard as shard_module

    monkeypatch.setattr(shard_module, "TAIL_BYTES", tail)
    local = tmp_path / "c"
    with CacheWriter(local, meta=meta, codec=pipe()) as w:
        recs = records(3, seed=8)  # token ids: u16 in record 0, u32 in record 1, none in record 2
        w.commit_shard(recs, token_hashes={"doc-1": 5},
                       token_ids={"doc-0": np.arange(len(recs[0][1])), "doc-1": np.arange(len(recs[1][1])) + 70_000})
    entry = load_manifest(local)["shards"][0]
    good = (local / entry["name"]).read_bytes()
    loc = open_location(f"memory://erpack-store/{tmp_path.name}/flip")
    missed = []
    for pos in range(len(good)):
        data = bytearray(good)
        data[pos] ^= 0x01
        loc.write_atomic(entry["name"], bytes(data))
        try:
            shard = ShardFile(loc, entry["name"], expected_size=entry["bytes"], limits=LIMITS)
            for i in (2, 1, 0):  # out of order: record 0 (and the header) last
                decode_payload(pipe(), shard, i, *shard.read(i)[:2])
            missed.append(pos)
        except StoreError:
            pass
    assert missed == []
    loc.write_atomic(entry["name"], good)
    shard = ShardFile(loc, entry["name"], expected_size=entry["bytes"], limits=LIMITS)
    assert [shard.read(i)[1] for i in range(3)] and shard.header_checked


WORKER = """
import json, sys
sys.path.insert(0, {root!r})
from erpack.store.manifest import shard_name
from erpack.store.shard import RecordLimits
from erpack.store.writer import write_shard
from tests.store.conftest import HIDDEN, pipe, records
url, tag, first = sys.argv[1], sys.argv[2], int(sys.argv[3])
entries = [write_shard(url, shard_name(k, tag=tag), records(5, seed=first + k, start=5 * (first + k)), pipe(),
                       RecordLimits(HIDDEN, 16)) for k in range(2)]
print(json.dumps(entries))
"""


@pytest.mark.slow
def test_worker_processes_publish_driver_commits(s3_bucket, meta):
    """Two worker processes publish shards concurrently (their own S3 clients); the driver, whose writer
    was open all along, lists them in one manifest write; the cache verifies and holds every record."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    where = f"{s3_bucket}/cache"
    with CacheWriter(where, meta=meta, codec=pipe()) as w:
        procs = [subprocess.Popen([sys.executable, "-c", WORKER.format(root=str(root)), where, f"w{k}", str(2 * k)],
                                  stdout=subprocess.PIPE, cwd=root) for k in range(2)]
        outs = [p.communicate(timeout=120)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0]
        entries = [e for out in outs for e in json.loads(out)]  # through JSON, as from a Ray task
        assert w.commit_entries(entries)["documents"] == 20
    got = read_back(where)
    assert same(got, [r for s in range(4) for r in records(5, seed=s, start=5 * s)])
    assert verify_cache(where).ok


def test_verify_reports_a_missing_shard_among_others(where, meta):
    with CacheWriter(where, meta=meta, codec=pipe()) as w:
        for k in range(3):
            w.commit_shard(records(2, seed=k, prefix=f"s{k}"))
    open_location(where).delete("shard-000001.ers")
    report = verify_cache(where)
    assert [s.ok for s in report.shards] == [True, False, True] and report.unreadable == ["shard-000001.ers"]
    assert [(f.shard, f.error) for f in report.failures] == [("shard-000001.ers", "listed in the manifest but missing")]
