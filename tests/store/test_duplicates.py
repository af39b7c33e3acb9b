"""on_duplicate: an id already in the cache, or twice in one commit: error, skip, replace."""

from __future__ import annotations

import numpy as np
import pytest

from erpack.errors import StoreError
from erpack.store import CacheReader, CacheWriter
from tests.store.conftest import HIDDEN, pipe, records, snapshot


def arr(value: float, tokens: int = 2) -> np.ndarray:
    return np.full((tokens, HIDDEN), value, np.float32)


def test_error_raises_before_writing(tmp_path, meta):
    with CacheWriter(tmp_path, meta=meta, codec=pipe()) as w:
        w.commit_shard([("a", arr(1)), ("b", arr(2))])
        before = snapshot(tmp_path)
        with pytest.raises(StoreError, match=r"\['b'\] \(already in the cache\).*nothing was written"):
            w.commit_shard([("c", arr(3)), ("b", arr(4))])
        with pytest.raises(StoreError, match=r"\['d'\] \(given twice in this commit\)"):
            w.commit_shard([("d", arr(3)), ("d", arr(4))])
        assert snapshot(tmp_path) == before and not w.contains("c")


def test_skip_keeps_the_old(tmp_path, meta):
    with CacheWriter(tmp_path, meta=meta, codec=pipe(), on_duplicate="skip") as w:
        w.commit_shard([("a", arr(1)), ("b", arr(2))])
        info = w.commit_shard([("b", arr(9)), ("c", arr(3)), ("c", arr(8)), ("a", arr(9))])
        assert (info["documents"], info["skipped"], info["replaced"]) == (1, 3, 0)
        assert w.commit_shard([("a", arr(7))])["shard"] is None  # all present: nothing written
    r = CacheReader(tmp_path)
    assert r.ids() == ["a", "b", "c"] and len(r.manifest["shards"]) == 2
    assert r.get("b")[0, 0] == 2 and r.get("c")[0, 0] == 3 and r.get("a")[0, 0] == 1


def test_replace_points_to_the_newest(tmp_path, meta):
    with CacheWriter(tmp_path, meta=meta, codec=pipe(), on_duplicate="replace") as w:
        w.commit_shard([("a", arr(1, 3)), ("b", arr(2, 4)), ("c", arr(3, 1))], truncated=["b"])
        info = w.commit_shard([("b", arr(9, 2)), ("d", arr(4, 1)), ("d", arr(5, 5))])
        assert (info["documents"], info["skipped"], info["replaced"]) == (2, 1, 1)
        assert len(w) == 4
    r = CacheReader(tmp_path)
    assert r.ids() == ["a", "c", "b", "d"]  # a replaced document moves to its newest record
    assert r.get("b").shape == (2, HIDDEN) and r.get("b")[0, 0] == 9 and r.get("d")[0, 0] == 5
    counts = r.manifest["counts"]
    assert (counts["documents"], counts["tokens"], counts["truncated"], counts["records"]) == (4, 3 + 1 + 2 + 5, 0, 5)
    s = r.stats()
    assert (s.documents, s.records, s.dead_records, s.tokens) == (4, 5, 1, 11)
    report = r.verify()
    assert report.ok and report.documents == 4 and report.records == 5


def test_replace_across_reopen(tmp_path, meta):
    for value in (1, 2, 3):
        with CacheWriter(tmp_path, meta=meta, codec=pipe(), mode="append", on_duplicate="replace") as w:
            w.commit_shard(records(3) + [("x", arr(value))])
    r = CacheReader(tmp_path)
    assert len(r) == 4 and r.get("x")[0, 0] == 3 and r.manifest["counts"]["records"] == 12
    assert r.ids() == ["doc-0", "doc-1", "doc-2", "x"]
