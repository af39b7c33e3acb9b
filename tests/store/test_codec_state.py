"""A fitted codec's state inside the cache: written before the manifest that seals it, read and checked
(size, sha256, format, model and layer), adopted by an appending writer, checked by verify, counted
by inspect; a missing, damaged or foreign state is a StoreError naming the cache and what to do."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from erpack.codecs import Pipeline
from erpack.codecs.state import FittedState, context_of
from erpack.errors import StoreError
from erpack.store import CacheReader, CacheWriter, verify_cache
from erpack.store.codec_state import STATE_RE
from erpack.store.location import open_location
from erpack.store.manifest import MANIFEST, load_manifest
from tests.store.conftest import make_meta, records
from tests.store.crafted import rewrite_manifest
from tests.store.fitted import CODEC_ID, fitted_pipe, token_ids


def write(where, meta, recs, ids, codec=None, **kw):
    codec = codec or fitted_pipe(recs, ids, meta)
    with CacheWriter(where, meta=meta, codec=codec, **kw) as w:
        w.commit_shard(recs, token_ids=ids)
    return codec


def close(a, b):
    return np.allclose(a, b, rtol=0, atol=1e-5)


def test_context_of(meta):
    assert context_of(meta) == {"model": {"name": "tiny-bert", "weights_sha256": "ab" * 32, "hidden_size": 8},
                                "layer": 2}


@pytest.mark.parametrize("kind", ["local", "memory", "s3"])
def test_state_round_trip(kind, tmp_path, meta, fitted_codec, request):
    where = {"local": str(tmp_path / "c"), "memory": f"memory://erpack-store/{tmp_path.name}/st"}.get(kind) \
        or f"{request.getfixturevalue('s3_bucket')}/st"
    recs = records(6)
    ids = token_ids(recs)
    codec = write(where, meta, recs, ids)
    manifest = load_manifest(where)
    field = manifest["codec_state"]
    assert field["sha256"] == codec.state.sha256 and STATE_RE.match(field["name"])
    assert open_location(where).size(field["name"]) == field["bytes"] == len(codec.state.to_bytes())
    with CacheReader(where) as r:
        assert r.codec.state.sha256 == codec.state.sha256
        assert all(close(r.get(d), x) for d, x in recs)
        stats = r.stats()
        assert stats.state_bytes == field["bytes"] and stats.codec_state == field
        assert stats.bits_per_value > stats.bits_per_value_without_state
        assert np.isclose((stats.bits_per_value - stats.bits_per_value_without_state) * stats.tokens * 8,
                          8 * field["bytes"])
    assert verify_cache(where).ok


def test_append_keeps_the_state(tmp_path, meta, fitted_codec):
    recs = records(8)
    ids = token_ids(recs)
    codec = write(tmp_path / "c", meta, recs[:4], {d: ids[d] for d, _ in recs[:4]})
    # appending with the cache's codec unfitted: the writer loads the cache's state
    with CacheWriter(tmp_path / "c", meta=meta, codec=Pipeline.from_spec(CODEC_ID), mode="append") as w:
        assert w.codec.state.sha256 == codec.state.sha256
        w.commit_shard(recs[4:6], token_ids={d: ids[d] for d, _ in recs[4:6]})
    with CacheWriter(tmp_path / "c", meta=meta, codec=codec, mode="append") as w:  # the same state
        w.commit_shard(recs[6:], token_ids={d: ids[d] for d, _ in recs[6:]})
    other = fitted_pipe(recs[4:], ids, meta)  # fitted on other records: another state
    with pytest.raises(StoreError, match="carries a fitted state .* other than the cache's"):
        CacheWriter(tmp_path / "c", meta=meta, codec=other, mode="append")
    with CacheReader(tmp_path / "c") as r:
        assert len(r) == 8 and all(close(r.get(d), x) for d, x in recs)
    assert verify_cache(tmp_path / "c").ok
    assert len(list((tmp_path / "c").glob("codec-state-*"))) == 1


def test_missing_state(tmp_path, meta, fitted_codec):
    recs = records(3)
    write(tmp_path / "c", meta, recs, token_ids(recs))
    name = load_manifest(tmp_path / "c")["codec_state"]["name"]
    (tmp_path / "c" / name).unlink()
    for open_it in (CacheReader, lambda p: CacheWriter(p, meta=meta, codec=Pipeline.from_spec(CODEC_ID), mode="append")):
        with pytest.raises(StoreError, match=f"fitted state .*{name} of the cache .*c is missing.*restore it"):
            open_it(tmp_path / "c")
    report = verify_cache(tmp_path / "c")
    assert not report.ok and report.failures[0].shard == name and "missing" in report.failures[0].error


def test_damaged_state(tmp_path, meta, fitted_codec):
    recs = records(3)
    write(tmp_path / "c", meta, recs, token_ids(recs))
    path = tmp_path / "c" / load_manifest(tmp_path / "c")["codec_state"]["name"]
    data = bytearray(path.read_bytes())
    data[-3] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=f"{path.name} fails its sha256.*damaged.*restore it from a copy"):
        CacheReader(tmp_path / "c")
    path.write_bytes(bytes(data) + b"x")
    with pytest.raises(StoreError, match="is .* bytes but the manifest of .* says"):
        CacheReader(tmp_path / "c")
    assert not verify_cache(tmp_path / "c").ok


def test_cli_names_the_damaged_state(tmp_path, meta, fitted_codec, capsys):
    from erpack.cli import main

    recs = records(3)
    write(tmp_path / "c", meta, recs, token_ids(recs))
    path = tmp_path / "c" / load_manifest(tmp_path / "c")["codec_state"]["name"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    assert main(["verify", str(tmp_path / "c")]) == 1
    out = capsys.readouterr().out
    assert f"FAILED     {path.name}" in out and "decoding skipped: the fitted state failed" in out
    assert f"action     {path.name}: the codec's fitted state cannot be used" in out
    assert main(["inspect", str(tmp_path / "c")]) == 2
    assert f"{path.name} fails its sha256" in capsys.readouterr().err


def test_state_of_another_model_or_layer(tmp_path, meta, fitted_codec):
    recs = records(3)
    ids = token_ids(recs)
    write(tmp_path / "a", meta, recs, ids)
    other = make_meta(layer=3)
    write(tmp_path / "b", other, recs, ids)
    # b's state copied into a, the manifest rewritten to seal it (as a hand edit or a bad copy would)
    field_b = load_manifest(tmp_path / "b")["codec_state"]
    shutil.copy(tmp_path / "b" / field_b["name"], tmp_path / "a" / field_b["name"])
    rewrite_manifest(tmp_path / "a", lambda m: m.update(codec_state=field_b))
    with pytest.raises(StoreError, match="belongs to another model or layer than the cache .*layer 3 \\(the cache: 2\\)"):
        CacheReader(tmp_path / "a")
    assert not verify_cache(tmp_path / "a").ok
    # a writer refuses to start a cache with a state fitted for another layer
    with pytest.raises(StoreError, match="belongs to another model or layer"):
        CacheWriter(tmp_path / "n", meta=other, codec=fitted_pipe(recs, ids, meta))


def test_fitted_codec_without_state_in_the_manifest(tmp_path, meta, fitted_codec):
    recs = records(3)
    write(tmp_path / "c", meta, recs, token_ids(recs))
    rewrite_manifest(tmp_path / "c", lambda m: m.pop("codec_state"))
    with pytest.raises(StoreError, match="names no fitted state: the fitted state is missing"):
        CacheReader(tmp_path / "c")
    for decode in (True, False):
        report = verify_cache(tmp_path / "c", decode=decode)
        assert not report.ok and report.failures[0].shard == "codec_state"
    with pytest.raises(StoreError, match="no fitted state"):
        CacheWriter(tmp_path / "n", meta=meta, codec=Pipeline.from_spec(CODEC_ID))


def test_unlisted_state_is_a_leftover(tmp_path, meta, fitted_codec):
    recs = records(3)
    ids = token_ids(recs)
    codec = write(tmp_path / "c", meta, recs, ids)
    stray = FittedState(CODEC_ID, 1, {"context": context_of(meta)}, {"ids": np.zeros(1, np.int64),
                                                                    "means": np.zeros((1, 8), np.float32)})
    name = f"codec-state-{stray.sha256[:16]}.safetensors"
    (tmp_path / "c" / name).write_bytes(stray.to_bytes())
    (tmp_path / "c" / (name + ".tmp")).write_bytes(b"half")
    report = verify_cache(tmp_path / "c")
    assert report.ok and any(w.startswith(name + ":") for w in report.warnings)
    with CacheWriter(tmp_path / "c", meta=meta, codec=codec, mode="append") as w:
        assert sorted(w.removed) == [name, name + ".tmp"]
    assert [p.name for p in (tmp_path / "c").glob("codec-state-*")] == [load_manifest(tmp_path / "c")["codec_state"]["name"]]


@pytest.mark.parametrize("kind", ["local", "memory"])
def test_state_is_written_before_the_manifest(kind, tmp_path, meta, fitted_codec, monkeypatch):
    """A crash between the state file and the manifest leaves no manifest naming a missing state; the
    next writer of the folder starts over and removes the orphan (remotely too: the session mark)."""
    from erpack.store import writer as writer_mod

    where = str(tmp_path / "c") if kind == "local" else f"memory://erpack-store/{tmp_path.name}/crash"
    loc = open_location(where)
    recs = records(3)
    ids = token_ids(recs)
    codec = fitted_pipe(recs, ids, meta)
    monkeypatch.setattr(writer_mod, "write_manifest", lambda *a: (_ for _ in ()).throw(OSError("crash")))
    with pytest.raises(OSError, match="crash"):
        CacheWriter(where, meta=meta, codec=codec)
    assert not loc.exists(MANIFEST) and [n for n in loc.listdir() if STATE_RE.match(n)]
    monkeypatch.undo()
    write(where, meta, recs, ids, codec=codec)
    assert [n for n in loc.listdir() if STATE_RE.match(n)] == [load_manifest(where)["codec_state"]["name"]]
    assert verify_cache(where).ok


def test_inspect_shows_both_rates(tmp_path, meta, fitted_codec, capsys):
    from erpack.cli import main

    recs = records(3)
    write(tmp_path / "c", meta, recs, token_ids(recs))
    assert main(["inspect", str(tmp_path / "c"), "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    stats = json.loads(out[-1])
    assert stats["state_bytes"] > 0 and stats["bits_per_value_without_state"] < stats["bits_per_value"]
    text = "\n".join(out[:-1])
    assert "without the fitted state" in text and "fitted state codec-state-" in text


def test_a_record_without_token_ids_under_a_codec_that_needs_them(tmp_path, meta, fitted_codec):
    """Only a broken writer makes one (CacheWriter refuses): reading it names shard, record and id."""
    from erpack.errors import CorruptRecordError
    from erpack.store.manifest import shard_name
    from erpack.store.writer import write_shard

    recs = records(4)
    ids = token_ids(recs)
    codec = write(tmp_path / "c", meta, recs[:2], {d: ids[d] for d, _ in recs[:2]})

    class NoIds:  # codes as the fitted codec does, but stores no token ids
        needs_tokens = False

        def encode(self, x):
            return codec.encode(x, tokens=np.zeros(len(x), np.int64))

    with CacheWriter(tmp_path / "c", meta=meta, codec=codec, mode="append", index=False) as w:
        w.commit_entries([write_shard(tmp_path / "c", shard_name(0, tag="x"), recs[2:], NoIds(), w.limits)])
    with CacheReader(tmp_path / "c") as r:
        assert close(r.get("doc-0"), recs[0][1])
        hint = "doc-2.*holds no token ids, which its codec needs.*re-encode"
        with pytest.raises(CorruptRecordError, match="shard-x-000000.ers, record 0 .*" + hint):
            r.get("doc-2")
        with pytest.raises(CorruptRecordError, match=hint):
            r.get_batch(["doc-0", "doc-2"])
        with pytest.raises(CorruptRecordError, match=hint):
            list(r)
    report = verify_cache(tmp_path / "c")
    assert not report.ok and [f.doc_id for f in report.failures] == ["doc-2", "doc-3"]
