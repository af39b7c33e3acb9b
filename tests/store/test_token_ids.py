"""Token ids in every record (shard version 3): written, read back (local, memory://, S3), covered by
the crc32, checked on the way in, counted by inspect; older shards read as "no token ids"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from erpack.errors import CorruptRecordError, StoreError
from erpack.store import CacheReader, CacheWriter, verify_cache
from erpack.store import format as fmt
from erpack.store.manifest import load_manifest
from tests.store.conftest import pipe, records
from tests.store.fitted import token_ids

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "store"


@pytest.fixture(params=["local", "memory", "s3"])
def where(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "cache")
    if request.param == "memory":
        return f"memory://erpack-store/{tmp_path.name}/tok"
    return f"{request.getfixturevalue('s3_bucket')}/tok"


def test_round_trip(where, meta):
    recs = records(6)
    ids = token_ids(recs)
    ids["doc-1"] = ids["doc-1"] + 70_000  # u32 for this record, u16 for the others
    del ids["doc-5"]  # a record without token ids
    with CacheWriter(where, meta=meta, codec=pipe()) as w:
        w.commit_shard(recs[:3], token_ids={d: ids[d] for d, _ in recs[:3]})
        w.commit_shard(recs[3:], token_ids={d: ids[d] for d, _ in recs[3:] if d in ids})
    for use_index in (True, False):
        with CacheReader(where, use_index=use_index) as r:
            for d, x in recs:
                got = r.get_tokens(d)
                if d in ids:
                    assert got.dtype == np.int64 and np.array_equal(got, ids[d])
                else:
                    assert got is None
                np.testing.assert_array_equal(r.get(d), x)
            assert [d for d, _ in r.iter_tokens()] == [d for d, _ in recs]
            flags = {d: f for s in r.live_records() for d, f in zip(s.ids, s.flags.tolist())}
            assert flags["doc-1"] == fmt.FLAG_TOKENS | fmt.FLAG_TOKENS_U32 and flags["doc-0"] == fmt.FLAG_TOKENS
            assert flags["doc-5"] == 0
    assert verify_cache(where).ok
    assert load_manifest(where)["format_version"] == fmt.FORMAT_VERSION == 3


def test_token_ids_are_counted(tmp_path, meta):
    recs = records(4)
    with CacheWriter(tmp_path / "c", meta=meta, codec=pipe()) as w:
        w.commit_shard(recs, token_ids=token_ids(recs))
    with CacheWriter(tmp_path / "n", meta=meta, codec=pipe()) as w:
        w.commit_shard(recs)
    a, b = CacheReader(tmp_path / "c").stats(), CacheReader(tmp_path / "n").stats()
    tokens = sum(len(x) for _, x in recs)
    assert a.token_id_bytes == 2 * tokens and b.token_id_bytes == 0
    shards = lambda s: sum(sh.bytes for sh in s.shards)  # noqa: E731
    assert 2 * tokens <= shards(a) - shards(b) <= 2 * tokens + 8 * len(recs)  # the ids plus alignment
    assert a.bits_per_value > b.bits_per_value and a.state_bytes == 0 and a.codec_state is None


def test_flipped_bit_in_token_ids_is_caught(tmp_path, meta):
    recs = records(3)
    ids = token_ids(recs)
    with CacheWriter(tmp_path / "c", meta=meta, codec=pipe(), index=False) as w:
        w.commit_shard(recs, token_ids=ids)
    r = CacheReader(tmp_path / "c")
    info = r.info("doc-1")
    r.close()
    shard = tmp_path / "c" / info["shard"]
    data = bytearray(shard.read_bytes())
    at = info["offset"] + fmt.RECORD_HEADER.size + info["payload_bytes"]  # the record's first token id
    assert int.from_bytes(data[at : at + 2], "little") == ids["doc-1"][0]
    data[at] ^= 0x10
    shard.write_bytes(bytes(data))
    with CacheReader(tmp_path / "c") as r, pytest.raises(CorruptRecordError, match="doc-1.*crc32 mismatch"):
        r.get_tokens("doc-1")
    report = verify_cache(tmp_path / "c")
    assert not report.ok and [f.doc_id for f in report.failures if f.doc_id] == ["doc-1"]


@pytest.mark.parametrize("bad, match", [
    ({"doc-0": [1, 2, 3, 4, 5, 6, 7]}, "token ids for"),
    ({"doc-0": [-1]}, r"\[0, 2\*\*32\)"),
    ({"doc-0": [1 << 32]}, r"\[0, 2\*\*32\)"),
    ({"doc-0": [0.5]}, "integer array"),
    ({"nope": [1]}, "not in this commit"),
])
def test_bad_token_ids_write_nothing(tmp_path, meta, bad, match):
    recs = records(2)
    if "doc-0" in bad and len(bad["doc-0"]) == 1:
        recs[0] = ("doc-0", recs[0][1][:1])
    with CacheWriter(tmp_path / "c", meta=meta, codec=pipe()) as w:
        with pytest.raises(StoreError, match=match):
            w.commit_shard(recs, token_ids=bad)
        assert len(w) == 0 and not list((tmp_path / "c").glob("shard-*"))


@pytest.mark.parametrize("version", [1, 2])
def test_older_shards_have_no_token_ids(version):
    with CacheReader(FIXTURES / f"v{version}") as r:
        assert all(r.get_tokens(d) is None for d in r.ids())


def test_appending_to_an_old_cache_bumps_its_version(tmp_path, meta):
    import shutil

    shutil.copytree(FIXTURES / "v2", tmp_path / "c")
    from tests.store.golden import META, values

    with CacheWriter(tmp_path / "c", meta=META, codec=pipe(), mode="append") as w:
        w.commit_shard([("new", values(2, 5.0))], token_ids={"new": [7, 8]})
    with CacheReader(tmp_path / "c") as r:
        assert r.manifest["format_version"] == 3 and r.get_tokens("new").tolist() == [7, 8]
        assert r.get_tokens("a") is None and len(r) == 5
    assert verify_cache(tmp_path / "c").ok


def test_a_codec_that_needs_tokens_gets_them(tmp_path, meta, fitted_codec):
    from tests.store.fitted import fitted_pipe

    recs = records(5)
    ids = token_ids(recs)
    codec = fitted_pipe(recs, ids, meta)
    with CacheWriter(tmp_path / "c", meta=meta, codec=codec) as w:
        with pytest.raises(StoreError, match="doc-0.*token ids.*none were given"):
            w.commit_shard(recs)
        w.commit_shard(recs, token_ids=ids)
    with CacheReader(tmp_path / "c") as r:
        for d, x in recs:
            np.testing.assert_allclose(r.get(d), x, rtol=0, atol=1e-5)
        hidden, mask = r.get_batch([d for d, _ in recs])
        for k, (_, x) in enumerate(recs):
            np.testing.assert_allclose(hidden[k, : len(x)], x, rtol=0, atol=1e-5)
        assert [d for d, _ in r] == [d for d, _ in recs]
    assert verify_cache(tmp_path / "c").ok


