"""`erpack predict --engine ray`: Ray actors score a cache into Parquet/JSONL parts whose rows equal the
single-process `erpack predict` rows; `_parts.json` is written last and checks every part. Real Ray
(tests/services.py's ray_local), real onnxruntime, a local cache and one on the moto S3 server."""

from __future__ import annotations

import json

import pytest

from erpack.cli import main
from erpack.cluster.score import PARTS, read_parts, score_on_ray
from erpack.errors import StoreError
from tests.remote import reads_urls, upload_cache

pytest.importorskip("ray", reason="the `scale` extra installs Ray")


def _lines(path):
    return [json.loads(line) for line in open(path)]


def _same_rows(got: list[dict], want: list[dict]) -> None:
    """Same ids in the same order, same predicted label, probabilities equal up to float32 noise (the
    batches are padded differently when the ids are split into parts)."""
    assert [r["id"] for r in got] == [r["id"] for r in want]
    for a, b in zip(got, want):
        assert a["source"] == b["source"] == "cache" and a["predicted"] == b["predicted"]
        assert a["probabilities"].keys() == b["probabilities"].keys()
        assert max(abs(a["probabilities"][k] - b["probabilities"][k]) for k in a["probabilities"]) < 1e-5


@pytest.fixture(scope="module")
def single(exported, tiny, tmp_path_factory):
    """The single-process predictions of every cached document: what the Ray parts must equal."""
    path = tmp_path_factory.mktemp("single") / "p.jsonl"
    assert main(["predict", str(exported[0]), str(tiny["cache"]), "-o", str(path)]) == 0
    return _lines(path)


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_ray_parts_equal_single_process(ray_local, exported, tiny, single, tmp_path, capsys, fmt):
    out = tmp_path / "preds"
    code = main(["predict", str(exported[0]), str(tiny["cache"]), "--engine", "ray", "--workers", "2",
                 "--part-docs", "7", "--format", fmt, "--out", str(out), "--json"])
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and s["predicted"] == s["requested"] == len(tiny["rows"]) and not s["missing"]
    assert [p["name"] for p in s["parts"]] == [f"part-{k:06d}.{fmt}" for k in range(4)]  # 24 ids, 7 a part
    assert [p["rows"] for p in s["parts"]] == [7, 7, 7, 3]
    listing = json.loads((out / PARTS).read_text())
    assert listing["parts"] == s["parts"] and listing["format"] == fmt
    _same_rows(read_parts(out), single)


def test_selected_ids_and_missing_ones(ray_local, exported, tiny, single, tmp_path, capsys):
    ids = ["d005", "d001", "nope", "d005"]
    code = main(["predict", str(exported[0]), str(tiny["cache"]), "--ids", ",".join(ids), "--engine", "ray",
                 "--out", str(tmp_path / "p"), "--format", "jsonl"])
    assert code == 1 and "nope" in capsys.readouterr().err
    want = {r["id"]: r for r in single}
    _same_rows(read_parts(tmp_path / "p"), [want["d005"], want["d001"]])
    assert json.loads((tmp_path / "p" / PARTS).read_text())["missing"] == ["nope"]


def test_rerun_replaces_the_old_parts_and_a_bad_part_is_caught(ray_local, exported, tiny, tmp_path):
    out = tmp_path / "p"
    score_on_ray(exported[0], tiny["cache"], out, part_docs=5, fmt="jsonl")
    assert len(list(out.glob("part-*"))) == 5
    score_on_ray(exported[0], tiny["cache"], out, ids=["d000", "d001"], fmt="jsonl")
    assert sorted(p.name for p in out.glob("part-*")) == ["part-000000.jsonl"]  # no stale part left
    (out / "part-000000.jsonl").write_text('{"id": "d000"}\n')
    with pytest.raises(StoreError, match="sha256"):
        read_parts(out)
    (out / PARTS).unlink()  # an interrupted run: parts without a listing are no result
    with pytest.raises(StoreError, match="did not finish"):
        read_parts(out)


def test_ray_engine_refuses_what_it_does_not_do(exported, tiny, tmp_path, capsys):
    base = ["predict", str(exported[0]), str(tiny["cache"]), "--engine", "ray"]
    assert main([*base, "--out", str(tmp_path / "p"), "--texts", str(tiny["corpus"])]) == 2
    assert "--texts" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "p"), "--labels", str(tiny["corpus"])]) == 2  # a document graph's
    assert "drop --labels (or run without --engine ray)" in capsys.readouterr().err
    assert main(base) == 2 and "--out" in capsys.readouterr().err
    assert main(["predict", str(exported[0]), str(tiny["cache"])]) == 2 and "-o FILE" in capsys.readouterr().err


@reads_urls
def test_predict_from_s3_equals_the_local_copy(ray_local, exported, tiny, single, s3_bucket, tmp_path, capsys):
    """Single-process predict from s3:// writes the local rows exactly; the Ray engine reads the same cache
    and writes its parts to s3:// too."""
    url = upload_cache(tiny["cache"], f"{s3_bucket}/caches/tiny")
    assert main(["predict", str(exported[0]), url, "-o", f"{s3_bucket}/p.jsonl"]) == 0
    import fsspec

    with fsspec.open(f"{s3_bucket}/p.jsonl", "rt") as f:
        assert [json.loads(line) for line in f] == single
    out = f"{s3_bucket}/parts"
    assert main(["predict", str(exported[0]), url, "--engine", "ray", "--part-docs", "10", "--out", out]) == 0
    _same_rows(read_parts(out), single)
    assert "3 parquet part(s)" in capsys.readouterr().out


def test_a_failing_part_fails_the_run_and_lists_nothing(ray_local, exported, tiny, tmp_path, capsys):
    """A damaged record: the actor scoring its part raises, the command exits 2 naming the record, and no
    `_parts.json` is written (the parts the other actors finished are not a result)."""
    import shutil

    from erpack.store import CacheReader

    cache = shutil.copytree(tiny["cache"], tmp_path / "cache")
    with CacheReader(cache) as reader:
        info = reader.info("d020")
    with open(cache / info["shard"], "r+b") as f:  # a byte of the record's payload
        f.seek(info["offset"] + 32 + info["payload_bytes"] // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0xFF]))
    out = tmp_path / "p"
    assert main(["predict", str(exported[0]), str(cache), "--engine", "ray", "--part-docs", "5",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "d020" in err and "erpack verify" in err, err
    assert not (out / PARTS).exists()
