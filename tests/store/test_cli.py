"""`erpack inspect` and `erpack verify`: the card, the JSON last line, the exit status."""

from __future__ import annotations

import json

import pytest

from erpack.cli import main
from erpack.store import CacheReader, CacheWriter
from tests.store.conftest import pipe, records
from tests.store.crafted import rewrite_manifest


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
    for part in ("erpack-cache v3, manifest sealed by its checksum", "tiny-bert", "layer        2", "codec        fp32", "6 (1 truncated", "bytes per token",
                 "bits per value", "shard-000001.ers", "1 dead"):
        assert part in text


def test_inspect_ids(cache, capsys):
    """--ids: the live document ids, one per line (pipeable); with --json one list."""
    with CacheReader(cache) as r:
        want = r.ids()
    assert len(want) == 6
    assert main(["inspect", str(cache), "--ids"]) == 0
    assert capsys.readouterr().out.splitlines() == want
    assert main(["inspect", str(cache), "--ids", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == want


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
    assert "action     re-encode 1 live document(s) ('doc-2')" in text
    assert main(["verify", str(cache), "--no-decode"]) == 1


def test_not_a_cache_is_exit_2(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "missing")]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path)]) == 2


def flip(path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def _record(cache, doc_id: str, shard: str = "shard-000000.ers"):
    info = CacheReader(cache).info(doc_id)
    assert info["shard"] == shard
    return cache / shard, info["offset"] + 40


def _unseal(cache, edit=lambda m: None):
    rewrite_manifest(cache, lambda m: (m.update(format_version=1), edit(m)))


DAMAGE = {  # kind: (how, lines the human report must hold)
    "missing shard": (lambda c: (c / "shard-000001.ers").unlink(), [
        "(live documents unknown: 1 shard(s) cannot be read)",
        "FAILED     shard-000001.ers: whole file: listed in the manifest but missing",
        "action     shard-000001.ers cannot be read (listed in the manifest but missing), so the documents it "
        "holds cannot be listed: restore it from a copy of the cache, or re-encode the corpus into a new folder"]),
    "truncated shard": (lambda c: (c / "shard-000001.ers").write_bytes((c / "shard-000001.ers").read_bytes()[:-9]), [
        "(live documents unknown: 1 shard(s) cannot be read)",
        "action     shard-000001.ers cannot be read (is", "truncated after it was committed), so the documents it holds "
        "cannot be listed: restore it from a copy"]),
    "damaged index": (lambda c: flip(c / "shard-000001.ers", (c / "shard-000001.ers").stat().st_size - 40), [
        "action     shard-000001.ers cannot be read (is damaged (index at offset"]),
    "damaged live record": (lambda c: flip(*_record(c, "doc-2")), [
        "(6 live documents)", "FAILED     shard-000000.ers: record 2 (doc id 'doc-2')",
        "action     re-encode 1 live document(s) ('doc-2'): encode them again into this cache with --on-duplicate "
        "replace"]),
    "damaged dead record": (lambda c: flip(c / "shard-000000.ers", 16 + 40), [  # the first doc-0, since replaced
        "[dead record, superseded]", "action     every damaged record is dead"]),
    "sha256 in a v1 manifest": (lambda c: _unseal(c, lambda m: m["shards"][1].update(sha256="0" * 64)), [
        "FAILED     shard-000001.ers: whole file: sha256 of the file differs from the manifest's",
        "action     shard-000001.ers: the manifest's records of the shards (sha256 or counts) disagree with the "
        "files, which check out: restore manifest.json from a copy"]),
    "counts in a v1 manifest": (lambda c: _unseal(c, lambda m: m["counts"].update(tokens=1)), [
        "FAILED     manifest.json: whole file: counts.tokens is 1", "action     manifest.json: the manifest's records"]),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_verify_says_what_failed_and_what_to_do(tmp_path, meta, capsys, kind):
    with CacheWriter(tmp_path, meta=meta, codec=pipe(), on_duplicate="replace") as w:
        w.commit_shard(records(5, seed=1))  # doc-0 .. doc-4
        w.commit_shard(records(2, seed=2, start=4) + records(1, seed=3))  # doc-4, doc-5 and doc-0 again
    how, lines = DAMAGE[kind]
    how(tmp_path)
    assert main(["verify", str(tmp_path), "--json"]) == 1
    out = capsys.readouterr().out.splitlines()
    text = "\n".join(out[:-1])
    for line in lines:
        assert line in text, f"{line!r} not in:\n{text}"
    assert "None" not in text and "0 live document(s)" not in text and "result     FAILED" in text
    if "v1" in kind:
        assert "warning    manifest.json is format version 1" in text
    assert not json.loads(out[-1])["ok"]
