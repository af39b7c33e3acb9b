"""erpack.compress (measure, load_raw, recode_cache) and the `erpack compress` / `erpack codecs` commands."""

from __future__ import annotations

import json

import numpy as np
import pytest

from erpack.cli import main
from erpack.codecs import Pipeline
from erpack.compress import load_raw, load_source, measure, recode_cache, spec_slug
from erpack.errors import InputError

from .codecs.cases import activations

H = 24


def docs(n: int = 6, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [activations(int(rng.integers(1, 12)), H, seed=seed + i) for i in range(n)]


def write_npy(tmp_path, arrays, name="acts"):
    path = tmp_path / f"{name}.npy"
    np.save(path, np.concatenate(arrays), allow_pickle=False)
    offsets = np.cumsum([0] + [len(a) for a in arrays]).astype(np.int64)
    np.save(tmp_path / f"{name}.offsets.npy", offsets, allow_pickle=False)
    return path


def write_safetensors(tmp_path, arrays, ids=None, name="acts"):
    from safetensors.numpy import save_file

    path = tmp_path / f"{name}.safetensors"
    offsets = np.cumsum([0] + [len(a) for a in arrays]).astype(np.int64)
    save_file({"activations": np.concatenate(arrays), "offsets": offsets}, str(path),
              metadata={"doc_ids": json.dumps(ids)} if ids else None)
    return path


def make_cache(tmp_path, arrays, spec="fp32"):
    from erpack.store import CacheWriter

    meta = {"model": {"name": "tiny", "model_type": "bert", "hidden_size": H, "num_layers": 4}, "layer": 2,
            "tokenizer": {"name": "tiny"}, "max_length": 16}
    path = tmp_path / "cache"
    with CacheWriter(path, meta=meta, codec=Pipeline.from_spec(spec)) as w:
        w.commit_shard([(f"d{i}", a) for i, a in enumerate(arrays)], truncated=["d1"],
                       token_ids={f"d{i}": np.arange(len(a)) + 100 * i for i, a in enumerate(arrays) if i != 2})
    return path


# ---- measure ---------------------------------------------------------------------------------------
def test_measure_row():
    arrays = docs()
    row = measure("int8z", arrays)
    assert row.spec == "int8c:41+zstd:3" and not row.lossless
    assert row.docs == len(arrays) and row.tokens == sum(len(a) for a in arrays) and row.hidden == H
    nbytes = sum(len(Pipeline.from_spec("int8z").encode(a)) for a in arrays)
    assert row.bits_per_value == pytest.approx(8 * nbytes / sum(a.size for a in arrays))
    assert row.ratio_vs_fp32 == pytest.approx(32 / row.bits_per_value)
    assert 35 < row.sqnr_db < 50 and 0.999 < row.mean_token_cosine <= 1
    assert row.encode_MBps > 0 and row.decode_MBps > 0
    json.dumps(row.as_dict(), allow_nan=False)


def test_measure_lossless_is_exact_and_accepts_pairs():
    arrays = docs()
    row = measure(Pipeline.from_spec("lossless"), [(str(i), a) for i, a in enumerate(arrays)])
    assert row.sqnr_db is None and row.lossless and row.mean_token_cosine == pytest.approx(1.0)
    with pytest.raises(InputError, match="no documents"):
        measure("fp32", [])


# ---- raw activations -------------------------------------------------------------------------------
def test_load_raw_npy_and_safetensors(tmp_path):
    arrays = docs()
    got = load_raw(write_npy(tmp_path, arrays))
    assert [i for i, _ in got] == [str(i) for i in range(len(arrays))]
    for (_, a), b in zip(got, arrays):
        assert a.dtype == np.float32 and np.array_equal(a, b)
    ids = [f"doc-{i}" for i in range(len(arrays))]
    got = load_raw(write_safetensors(tmp_path, arrays, ids))
    assert [i for i, _ in got] == ids and all(np.array_equal(a, b) for (_, a), b in zip(got, arrays))
    # an explicit offsets file wins over the sibling
    other = tmp_path / "two.npy"
    np.save(other, np.array([0, 3, len(np.concatenate(arrays))]), allow_pickle=False)
    assert len(load_raw(tmp_path / "acts.npy", offsets=other)) == 2


@pytest.mark.parametrize("offsets, message", [
    ([0, 5, 5, 10], "rise strictly"),
    ([1, 10], "start at 0 and end at 10"),
    ([0, 9], "start at 0 and end at 10"),
    ([0.0, 10.0], "1-D integer array"),
    ([[0, 10]], "1-D integer array"),
    ([0], "1-D integer array"),
])
def test_bad_offsets_name_the_file(tmp_path, offsets, message):
    np.save(tmp_path / "a.npy", np.zeros((10, 4), np.float32), allow_pickle=False)
    np.save(tmp_path / "a.offsets.npy", np.array(offsets), allow_pickle=False)
    with pytest.raises(InputError, match=message) as err:
        load_raw(tmp_path / "a.npy")
    assert "a.offsets.npy" in str(err.value)


def test_bad_raw_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_raw(tmp_path / "missing.npy")
    np.save(tmp_path / "a.npy", np.zeros((10, 4), np.float32), allow_pickle=False)
    with pytest.raises(InputError, match="--offsets"):
        load_raw(tmp_path / "a.npy")
    np.save(tmp_path / "b.npy", np.zeros(10, np.float32), allow_pickle=False)
    np.save(tmp_path / "b.offsets.npy", np.array([0, 10]), allow_pickle=False)
    with pytest.raises(InputError, match="b.npy: activations must be a 2-D float array"):
        load_raw(tmp_path / "b.npy")
    np.save(tmp_path / "c.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="without pickle"):
        load_raw(tmp_path / "c.npy", offsets=tmp_path / "b.offsets.npy")
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(InputError, match="unknown activations format"):
        load_raw(tmp_path / "d.txt")
    from safetensors.numpy import save_file

    save_file({"activations": np.zeros((3, 4), np.float32)}, str(tmp_path / "e.safetensors"))
    with pytest.raises(InputError, match=r"missing tensor\(s\) \['offsets'\]"):
        load_raw(tmp_path / "e.safetensors")
    (tmp_path / "f.safetensors").write_bytes(b"garbage")
    with pytest.raises(InputError, match="f.safetensors: cannot read"):
        load_raw(tmp_path / "f.safetensors")
    with pytest.raises(InputError, match="2 ids for 1 documents"):
        load_raw(write_safetensors(tmp_path, [np.zeros((2, 4), np.float32)], ids=["a", "b"], name="g"))


# ---- caches ------------------------------------------------------------------------------------------
def test_load_source_and_recode_cache(tmp_path):
    from erpack.store import CacheReader

    arrays = docs()
    src = make_cache(tmp_path, arrays)
    records, info = load_source(src, limit=4)
    assert info.kind == "cache" and info.codec == "fp32" and [i for i, _ in records] == ["d0", "d1", "d2", "d3"]
    out = recode_cache(src, tmp_path / "small", "int8z")
    assert out.documents == len(arrays) and out.spec == "int8c:41+zstd:3"
    with CacheReader(tmp_path / "small") as r:
        assert r.codec == Pipeline.from_spec("int8z") and r.meta["model"]["hidden_size"] == H
        assert r.info("d1")["truncated"] and not r.info("d0")["truncated"]
        for i, a in enumerate(arrays):
            np.testing.assert_allclose(r.get(f"d{i}"), a, atol=0.1 * np.abs(a).max())
            # token ids are copied (d2 had none)
            got = r.get_tokens(f"d{i}")
            assert (got is None) if i == 2 else got.tolist() == (np.arange(len(a)) + 100 * i).tolist()


def test_spec_slug():
    assert spec_slug("int8c:41+zstd:3") == "int8c-41_zstd-3"
    assert spec_slug("int4:g=64,asym=1") == "int4-g64-asym1"


# ---- CLI ---------------------------------------------------------------------------------------------
def test_cli_codecs(capsys):
    assert main(["codecs"]) == 0
    text = capsys.readouterr().out
    for word in ("stage := NAME", "int8c", "zstd", "int8z", "lossless", "streams"):
        assert word in text
    assert main(["codecs", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {c["id"] for c in doc["codecs"]} >= {"int8c", "zstd"} and "int8z" in doc["presets"]


def test_cli_compress_raw(tmp_path, capsys):
    path = write_npy(tmp_path, docs())
    assert main(["compress", str(path), "--codec", "int8z", "--codec", "lossless", "--json", "--limit", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    doc = json.loads(lines[-1])
    assert doc["documents"] == 4 and [r["spec"] for r in doc["rows"]] == ["int8c:41+zstd:3", "fp32+shuffle:4+zstd:level=3,streams=4"]
    table = "\n".join(lines[:-1])
    assert "bits/value" in table and "SQNR dB" in table and "exact" in table and "dec MB/s" in table


def test_cli_compress_cache_out(tmp_path, capsys):
    from erpack.store import CacheReader

    src = make_cache(tmp_path, docs())
    assert main(["compress", str(src), "--codec", "int4z", "--codec", "bf16z", "--out", str(tmp_path / "out")]) == 0
    for spec in ("int4z", "bf16z"):
        with CacheReader(tmp_path / "out" / spec_slug(Pipeline.from_spec(spec).spec)) as r:
            assert len(r) == 6
    assert main(["compress", str(src), "--codec", "int8", "--out", str(tmp_path / "one")]) == 0
    with CacheReader(tmp_path / "one") as r:
        assert r.codec.spec == "int8"
    capsys.readouterr()


@pytest.mark.parametrize("argv, message", [
    (["--codec", "int9"], "unknown codec 'int9'"),
    (["--codec", "int8", "--limit", "0"], "--limit must be at least 1"),
    (["--codec", "int8", "--out", "x"], "SOURCE must be a cache folder"),
])
def test_cli_compress_errors(tmp_path, capsys, argv, message):
    path = write_npy(tmp_path, docs())
    assert main(["compress", str(path), *argv]) == 2
    assert message in capsys.readouterr().err


# ---- codecs with fitted state ------------------------------------------------------------------------
from tests.store.fitted import CODEC_ID  # noqa: E402  (the test-only fitted codec; its fixture: tests/conftest.py)


def tokens_cache(tmp_path, n=12, name="tok"):
    """A cache whose every record holds token ids (what a fitted codec needs)."""
    from erpack.store import CacheWriter

    meta = {"model": {"name": "tiny", "model_type": "bert", "hidden_size": H, "num_layers": 4,
                      "weights_sha256": "cd" * 32}, "layer": 2, "tokenizer": {"name": "tiny"}, "max_length": 16}
    arrays = docs(n)
    rng = np.random.default_rng(5)
    with CacheWriter(tmp_path / name, meta=meta, codec=Pipeline.from_spec("fp32")) as w:
        w.commit_shard([(f"d{i}", a) for i, a in enumerate(arrays)],
                       token_ids={f"d{i}": rng.integers(0, 7, len(a)) for i, a in enumerate(arrays)})
    return tmp_path / name


def test_sample_ids_is_deterministic_and_order_free():
    from erpack.calibrate import sample_ids

    ids = [f"doc-{i}" for i in range(100)]
    a = sample_ids(ids, 10, seed=3)
    assert len(a) == 10 and a == [d for d in ids if d in set(a)]  # in the order given
    assert sorted(sample_ids(ids[::-1], 10, seed=3)) == sorted(a)  # the same ids whatever their order
    assert sample_ids(ids, 10, seed=4) != a
    assert sample_ids(ids[:5], 10) == ids[:5]  # all of them when fewer


def test_cli_compress_fits_on_the_source_and_writes_the_state(tmp_path, capsys, fitted_codec):
    from erpack.store import CacheReader, verify_cache

    src = tokens_cache(tmp_path)
    out = tmp_path / "fitted"
    argv = ["compress", str(src), "--codec", CODEC_ID, "--codec", "fp32", "--fit-docs", "5", "--seed", "1",
            "--json", "--out", str(out)]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"fitted   {CODEC_ID} on 5 of 12 documents (seed 1)") for line in lines)
    assert "+state" in next(line for line in lines if line.startswith("spec"))
    fitted_row, plain_row = json.loads(lines[-1])["rows"]
    assert fitted_row["fit"]["documents"] == 5 and "fit" not in plain_row
    assert fitted_row["state_bytes"] > 0 and fitted_row["bits_per_value_with_state"] > fitted_row["bits_per_value"]
    values = fitted_row["tokens"] * H
    assert np.isclose(fitted_row["bits_per_value_with_state"] - fitted_row["bits_per_value"],
                      8 * fitted_row["state_bytes"] / values)
    assert plain_row["state_bytes"] == 0 and plain_row["bits_per_value_with_state"] == plain_row["bits_per_value"]
    assert fitted_row["out"]["state_bytes"] == fitted_row["state_bytes"]
    # the same source, N and seed: the same state, from the library as from the command
    again = recode_cache(src, tmp_path / "again", CODEC_ID, fit_docs=5, seed=1)
    with CacheReader(out / spec_slug(CODEC_ID)) as r, CacheReader(tmp_path / "again") as r2, CacheReader(src) as s:
        assert r.manifest["codec_state"] == r2.manifest["codec_state"] and again.state_bytes == fitted_row["state_bytes"]
        assert r.codec.state.meta["context"]["layer"] == 2 and r.codec.state.meta["seed"] == 1
        assert all(np.allclose(r.get(d), s.get(d), atol=1e-5) and (r.get_tokens(d) == s.get_tokens(d)).all()
                   for d in s.ids())
    assert verify_cache(out / spec_slug(CODEC_ID)).ok
    other = recode_cache(src, tmp_path / "other", CODEC_ID, fit_docs=5, seed=2)  # another sample: another state
    with CacheReader(tmp_path / "other") as r:
        assert other.state_bytes and r.manifest["codec_state"]["sha256"] != r2_sha(tmp_path / "again")


def test_a_fitted_codec_without_token_ids_is_refused(tmp_path, capsys, fitted_codec):
    raw = write_npy(tmp_path, docs())
    assert main(["compress", str(raw), "--codec", CODEC_ID]) == 2
    assert "have none (raw activations" in capsys.readouterr().err
    src = make_cache(tmp_path, docs())  # d2 stored without token ids
    assert main(["compress", str(src), "--codec", CODEC_ID, "--out", str(tmp_path / "o")]) == 2
    assert "1 of the 6 sample records have none" in capsys.readouterr().err
    assert main(["compress", str(src), "--codec", CODEC_ID, "--fit-docs", "0"]) == 2
    assert "--fit-docs must be at least 1" in capsys.readouterr().err


def r2_sha(path) -> str:
    from erpack.store.manifest import load_manifest

    return load_manifest(path)["codec_state"]["sha256"]
