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
