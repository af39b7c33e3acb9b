"""manifest.json is sealed by its checksum (format version 2): any changed byte is refused by every
reader, the writer and `erpack verify`; a shard listed twice is refused; version 1 still reads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from erpack.cli import main
from erpack.errors import CorruptManifestError, StoreError
from erpack.store import CacheReader, CacheWriter, verify_cache
from tests.store.conftest import make_meta, pipe, records
from tests.store.crafted import rewrite_manifest
from tests.store.golden import META

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "store"


@pytest.fixture
def cache(tmp_path, meta):
    with CacheWriter(tmp_path / "c", meta=meta, codec=pipe("int8c+zstd:1"), on_duplicate="replace") as w:
        w.commit_shard(records(2, seed=1), truncated=["doc-0"])
        w.commit_shard(records(1, seed=2))
    return tmp_path / "c"


def refusals(folder: Path, meta: dict) -> dict:
    """How each consumer of the cache reacts: "refused" (an ErpackError), "accepted", or the exception."""
    out = {}

    def attempt(name, fn):
        try:
            fn()
            out[name] = "accepted"
        except StoreError:
            out[name] = "refused"
        except Exception as exc:  # noqa: BLE001 - anything else is a bug the test reports
            out[name] = f"{type(exc).__name__}: {exc}"

    attempt("reader", lambda: CacheReader(folder).close())
    def verify():
        if not verify_cache(folder).ok:  # damage reported (exit 1) counts as refused too
            raise StoreError("verify found damage")

    attempt("verify_cache", verify)
    attempt("writer", lambda: CacheWriter(folder, meta=meta, codec=pipe("int8c+zstd:1"), mode="append").close())
    return out


def test_every_bit_flip_of_the_manifest_is_refused(cache, meta, capsys):
    path = cache / "manifest.json"
    good = path.read_bytes()
    assert json.loads(good)["format_version"] == 3 and refusals(cache, meta) == dict.fromkeys(
        ["reader", "verify_cache", "writer"], "accepted")
    missed = []
    for bit in range(8 * len(good)):
        data = bytearray(good)
        data[bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(bytes(data))
        found = refusals(cache, meta)
        if set(found.values()) != {"refused"}:
            missed.append((bit // 8, bit % 8, found))
        if bit % 17 == 0:  # the command on a sample of them (the same library call): exit 1 or 2, no traceback
            assert main(["verify", str(cache)]) in (1, 2)
            out = "".join(capsys.readouterr())
            assert "manifest.json" in out and "Traceback" not in out
    path.write_bytes(good)
    assert not missed, f"{len(missed)} of {8 * len(good)} flips not refused everywhere, e.g. {missed[:3]}"
    assert sorted(p.name for p in cache.iterdir()) == ["index", "manifest.json", "shard-000000.ers",
                                                        "shard-000001.ers"]


def test_layer_edited_by_hand_is_refused(cache, meta, capsys):
    path = cache / "manifest.json"
    text = path.read_text()
    assert text.count('"layer": 2') == 1
    path.write_text(text.replace('"layer": 2', '"layer": 3'))
    with pytest.raises(StoreError, match=r"manifest.json fails its checksum.*restore manifest.json from a copy"):
        CacheReader(cache)
    with pytest.raises(StoreError, match="fails its checksum"):
        CacheWriter(cache, meta=make_meta(layer=3), codec=pipe("int8c+zstd:1"), mode="append")
    assert main(["verify", str(cache), "--json"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("FAILED     ") and "manifest.json fails its checksum" in out[1]
    assert "action     restore manifest.json from a copy" in out[3]
    assert json.loads(out[-1])["failures"][0]["shard"] == "manifest.json"


def test_a_sealed_manifest_edited_to_say_version_1_is_refused(cache):
    """Version 1 carries no checksum, so a checksum beside it means a sealed manifest whose version
    changed (one byte: 0x33 ^ 0x02; found by tools/fault_drill.py, which XORs whole bytes)."""
    path = cache / "manifest.json"
    text = path.read_text()
    assert text.count('"format_version": 3') == 1
    path.write_text(text.replace('"format_version": 3', '"format_version": 1'))
    for open_it in (CacheReader, verify_cache):
        with pytest.raises(StoreError, match="manifest.json fails its checksum"):
            open_it(cache)


def test_reformatted_manifest_is_refused(cache):
    """Same fields and checksum, other bytes (indent, key order): refused, as any change is."""
    path = cache / "manifest.json"
    manifest = json.loads(path.read_bytes())
    path.write_text(json.dumps(manifest, indent=4, sort_keys=True) + "\n")
    with pytest.raises(StoreError, match="not the bytes erpack wrote"):
        CacheReader(cache)


def test_missing_checksum_is_refused(cache):
    path = cache / "manifest.json"
    manifest = json.loads(path.read_bytes())
    del manifest["checksum"]
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    with pytest.raises(CorruptManifestError, match="format_version 3 but no valid 'checksum'"):
        CacheReader(cache)


@pytest.mark.parametrize("version", [1, 2])
def test_a_shard_listed_twice_is_refused(cache, meta, version):
    rewrite_manifest(cache, lambda m: m.update(format_version=version, shards=m["shards"] + m["shards"][:1]))
    for attempt in (lambda: CacheReader(cache), lambda: verify_cache(cache),
                    lambda: CacheWriter(cache, meta=meta, codec=pipe("int8c+zstd:1"), mode="append")):
        with pytest.raises(StoreError, match=r"manifest.json lists shard shard-000000.ers twice \(entries 0 and 2\)"):
            attempt()


def test_version_1_reads_warns_and_seals(tmp_path, capsys):
    cache = tmp_path / "v1"
    shutil.copytree(FIXTURES / "v1", cache)
    assert len(CacheReader(cache)) == 4
    report = verify_cache(cache)
    assert report.ok and not report.sealed
    assert main(["verify", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "warning    manifest.json is format version 1: it has no checksum" in out and "--seal" in out
    assert main(["verify", "--seal", str(cache)]) == 0
    assert "the manifest is sealed now" in capsys.readouterr().out
    sealed = (cache / "manifest.json").read_bytes()
    unsealed = json.loads((FIXTURES / "v1" / "manifest.json").read_bytes())
    assert {k: v for k, v in json.loads(sealed).items() if k != "checksum"} == {**unsealed, "format_version": 3}
    assert verify_cache(cache).sealed and len(CacheReader(cache)) == 4
    assert main(["verify", "--seal", str(cache)]) == 0  # sealing a sealed cache changes nothing
    assert (cache / "manifest.json").read_bytes() == sealed


def test_seal_refuses_a_damaged_cache(tmp_path, capsys):
    cache = tmp_path / "v1"
    shutil.copytree(FIXTURES / "v1", cache)
    before = (cache / "manifest.json").read_bytes()
    path = cache / "shard-000000.ers"
    data = bytearray(path.read_bytes())
    data[60] ^= 1  # inside the first record's payload
    path.write_bytes(bytes(data))
    assert main(["verify", "--seal", str(cache)]) == 1
    assert "FAILED" in capsys.readouterr().out
    assert (cache / "manifest.json").read_bytes() == before
    assert main(["verify", "--seal", "--no-decode", str(cache)]) == 2


def test_appending_keeps_the_version(tmp_path):
    """A writer appends in the cache's own version: a version-1 cache stays unsealed (seal it with
    `erpack verify --seal`), a version-2 cache is resealed on every commit."""
    cache = tmp_path / "v1"
    shutil.copytree(FIXTURES / "v1", cache)
    with CacheWriter(cache, meta=META, codec=pipe(), mode="append") as w:
        w.commit_shard([("e", np.ones((2, 4), np.float32))])
    manifest = json.loads((cache / "manifest.json").read_bytes())
    assert manifest["format_version"] == 1 and "checksum" not in manifest and verify_cache(cache).ok
    assert main(["verify", "--seal", str(cache)]) == 0
    with CacheWriter(cache, meta=META, codec=pipe(), mode="append") as w:
        w.commit_shard([("f", np.ones((1, 4), np.float32))])
    report = verify_cache(cache)
    assert report.ok and report.sealed and len(CacheReader(cache)) == 6
