"""`erpack inspect` and `erpack verify`: the card, the JSON last line, the exit status."""

from __future__ import annotations

import json

import pytest

from erpack.cli import main
from erpack.store import CacheReader, CacheWriter
from tests.store.conftest import pipe, records


@pytest.fixture
def cache(tmp_path, meta):
    with CacheWriter(tmp_path, meta=meta, codec=pipe(), on_duplicate="replace") as w:
        w.commit_shard(records(5, seed=1), truncated=["doc-1"])
        w.commit_shard(records(2, seed=2, start=4))
    return tmp_path


def test_inspect(cache, capsys):
    assert main(["inspect", str(cache), "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    stats = json.loads(out[-1])
    assert stats["documents"] == 6 and stats["dead_records"] == 1 and stats["truncated"] == 1
    text = "\n".join(out[:-1])
    for part in ("tiny-bert", "layer        2", "codec        fp32", "6 (1 truncated", "bytes per token",
                 "bits per value", "shard-000001.ers", "1 dead"):
        assert part in text


def test_verify_ok(cache, capsys):
    assert main(["verify", str(cache)]) == 0
    assert "OK: every shard and record checks out" in capsys.readouterr().out


def test_verify_lists_the_damaged_record(cache, capsys):
    offset = CacheReader(cache).info("doc-2")["offset"]
    path = cache / "shard-000000.ers"
    data = bytearray(path.read_bytes())
    data[offset + 40] ^= 1
    path.write_bytes(bytes(data))
    assert main(["verify", str(cache), "--json"]) == 1
    out = capsys.readouterr().out.splitlines()
    report = json.loads(out[-1])
    assert [(f["shard"], f["record_index"], f["doc_id"]) for f in report["failures"]] == [
        ("shard-000000.ers", 2, "doc-2")]
    text = "\n".join(out[:-1])
    assert "FAILED     shard-000000.ers: record 2 (doc id 'doc-2')" in text
    assert "1 live document(s) to re-encode" in text
    assert main(["verify", str(cache), "--no-decode"]) == 1


def test_not_a_cache_is_exit_2(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "missing")]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path)]) == 2
