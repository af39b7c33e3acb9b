"""erpack bench on a tiny model and cache: every path runs, the JSON has its fields, the breakdown adds up.

No test here compares one time with another: on a loaded machine any section can stretch. Speed
lives in the benchmark's own output, never in an assertion."""

from __future__ import annotations

import json

import pytest

from tests.bench import tiny
from tests.checkers import Bars


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    pytest.importorskip("onnxruntime", reason="the ONNX paths need the `onnx` extra")
    from erpack.bench import BenchConfig, run_bench

    t = tiny.build(tmp_path_factory.mktemp("bench"))
    cfg = BenchConfig(corpus=str(t["corpus"]), model=str(t["model"]), layer=tiny.LAYER, codecs=["int8+zstd:3"],
                      caches=[str(t["cache"])], prune=(0.5, 0.5), limit=None, split="all", batch_size=8, repeats=2,
                      warmup=1, threads=1, work=str(t["root"] / "work"), cold=True)
    return run_bench(cfg).as_dict()


def test_every_path_runs(result):
    names = [p["path"] for p in result["paths"]]
    assert names[:2] == ["full-torch", "full-onnx-int8"]
    for name in ("erpack-torch", "erpack-onnx-fp32", "erpack-onnx-int8", "erpack-pruned-int8"):
        assert names.count(name) == 2, names  # the given cache and the one encoded for --codec
    assert result["workload"]["documents"] == 40 and result["workload"]["layer"] == tiny.LAYER
    assert result["workload"]["compute_bound"] == pytest.approx(4 / (4 - tiny.LAYER))  # tiny BERT: L = 4


def test_breakdown_is_complete_and_consistent(result):
    """Structure, not proportions: every pass times the sections its path has, none negative, their
    sum never past the pass's total; the breakdown holds those sections plus `other` and adds up to
    the median pass."""
    from erpack.runtime.timing import SECTIONS

    for p in result["paths"]:
        med = p["seconds"]["median"]
        assert set(p["breakdown"]) <= set(SECTIONS) | {"other"} and "other" in p["breakdown"], p["path"]
        assert all(v >= 0 for v in p["breakdown"].values()), p["path"]
        assert sum(p["breakdown"].values()) == pytest.approx(med, rel=1e-6), p["path"]
        assert len(p["runs"]) == 2  # repeats=2
        for run in p["runs"]:
            assert set(run["sections"]) == set(p["breakdown"]) - {"other"}, (p["path"], run)
            assert all(v >= 0 for v in run["sections"].values()) and run["total"] > 0
            assert sum(run["sections"].values()) <= run["total"] * (1 + 1e-9)
        if p["path"].startswith("erpack"):
            assert {"read", "decompress", "dequantize", "pad", "compute"} <= set(p["breakdown"])
            assert p["bytes_per_token"] > 0 and p["compute_bound"] == pytest.approx(4 / 3)
            assert p["evicted"]["files"] >= 2  # --cold: shards and manifest evicted before each pass
        else:
            assert "tokenize" in p["breakdown"] and p["bytes_per_token"] is None


def test_untrained_head_is_said_and_agreement_given(result):
    assert not result["workload"]["trained_head"]
    assert all(p["accuracy"] is None for p in result["paths"])
    assert any("untrained head" in n for n in result["notes"])
    full = result["paths"][0]
    assert full["agreement_with_full_torch"] == 1.0 and full["speedup_vs_full_torch"] == 1.0
    torch_path = next(p for p in result["paths"] if p["path"] == "erpack-torch")
    assert torch_path["agreement_with_full_torch"] >= 0.9  # int8 cache: almost always the same class
    assert any("without LoRA recovery" in n for n in result["notes"])


def test_int8_graphs_are_calibrated_like_erpack_export(result):
    """Both int8 graphs (full model, upper stack) go through erpack.export's auto exclusion."""
    q = result["quantization"]
    assert {"full", "upper"} <= set(q), q
    for key in ("full", "upper"):
        assert 0.0 <= q[key]["agreement"] <= 1.0 and q[key]["calibration_documents"] == 20
        assert any(n.startswith(f"graph {key}.int8: int8 dynamic, 7-bit weights") for n in result["notes"])


def test_json_and_card(result):
    from erpack.bench import card

    text = "\n".join(card(result))
    assert "compute bound" in text and "n/a (untrained head)" in text and "dequantize" in text
    again = json.loads(json.dumps(result))
    assert again["machine"]["cores"] >= 1 and again["machine"]["versions"]["torch"]


def test_missing_pieces_are_skipped_with_a_note(tmp_path):
    from erpack.bench import BenchConfig, run_bench

    t = tiny.build(tmp_path)
    cfg = BenchConfig(corpus=str(t["corpus"]), model=str(t["model"]), layer=tiny.LAYER, limit=8,
                      paths=["full-torch", "erpack-torch", "erpack-pruned-int8"], repeats=1, warmup=0,
                      work=str(tmp_path / "work"))
    res = run_bench(cfg).as_dict()
    assert [p["path"] for p in res["paths"]] == ["full-torch"]
    assert any("no cache given" in n for n in res["notes"])


def test_bad_path_name_is_refused():
    from erpack.bench import BenchConfig
    from erpack.errors import InputError

    with pytest.raises(InputError, match="unknown path 'gpu-magic'"):
        BenchConfig(corpus="x.jsonl", paths=["gpu-magic"])


def test_training_epoch_from_cache_against_full_fine_tune(tmp_path):
    from erpack.bench import BenchConfig, run_bench

    t = tiny.build(tmp_path)
    rows = [json.loads(x) for x in t["corpus"].read_text().splitlines()]
    for i, r in enumerate(rows):
        r["split"] = "train" if i < 24 else ("validation" if i < 32 else "test")
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = run_bench(BenchConfig(corpus=str(labelled), model=str(t["model"]), layer=tiny.LAYER, limit=8,
                                paths=["full-torch"], repeats=1, warmup=0, train=24,
                                work=str(tmp_path / "work"))).as_dict()
    tr = res["training"]
    assert tr["documents"]["train"] == 24 and tr["recycled_seconds_per_epoch"] > 0
    assert tr["speedup"] == pytest.approx(tr["baseline_seconds_per_epoch"] / tr["recycled_seconds_per_epoch"])


def train_first_corpus(t, tmp_path):
    """The tiny corpus rewritten to list its 30 training documents first, then 10 test documents."""
    rows = [json.loads(x) for x in t["corpus"].read_text().splitlines()]
    for i, r in enumerate(rows):
        r["split"] = "train" if i < 30 else "test"
    path = tmp_path / "train-first.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, {r["id"] for r in rows[30:]}


def test_default_split_is_the_test_split(tmp_path):
    """A corpus that lists its training documents first: `--limit 8` scores 8 test documents, not the
    first 8 (training) ones, and the card says which split the accuracy is on."""
    from erpack.bench import BenchConfig, card, run_bench

    t = tiny.build(tmp_path)
    corpus, _ = train_first_corpus(t, tmp_path)
    cfg = dict(corpus=str(corpus), model=str(t["model"]), layer=tiny.LAYER, limit=8, paths=["full-torch"], repeats=1,
               warmup=0, work=str(tmp_path / "work"))
    res = run_bench(BenchConfig(**cfg)).as_dict()
    assert res["workload"]["split"] == "test" and res["workload"]["split_source"] == "split field"
    assert res["workload"]["documents"] == 8
    assert "accuracy on the test split (split field)" in "\n".join(card(res))
    bars = Bars()
    train = run_bench(BenchConfig(**cfg, split="train"), progress=bars)
    assert train.workload["split"] == "train"
    prep = next(b for b in bars.bars if b["desc"] == "bench")  # preparation shows progress, step by step
    assert prep["done"] == prep["total"] >= 6 and prep["closed"] and "bench: prepare full-torch" in prep["descriptions"]
    everything = run_bench(BenchConfig(**dict(cfg, limit=None), split="all")).as_dict()
    assert everything["workload"]["documents"] == 40


def test_split_selects_the_documents(tmp_path):
    from erpack.bench.documents import read_documents
    from erpack.errors import InputError

    t = tiny.build(tmp_path)
    corpus, test_ids = train_first_corpus(t, tmp_path)
    docs = read_documents(str(corpus), 8)
    assert docs.split == "test" and {d.id for d in docs.docs} <= test_ids and len(docs.docs) == 8
    assert {d.id for d in read_documents(str(corpus), None, "train").docs}.isdisjoint(test_ids)
    with pytest.raises(InputError, match="holds no validation documents"):
        read_documents(str(corpus), 8, "validation")
    unlabelled = tmp_path / "plain.jsonl"
    unlabelled.write_text("".join(json.dumps({"id": f"u{i}", "text": "w1 w2"}) + "\n" for i in range(5)))
    assert read_documents(str(unlabelled), None).split == "all"
    with pytest.raises(InputError, match="has no splits"):
        read_documents(str(unlabelled), None, "test")


def test_cli_prints_the_card_and_json_only_when_asked(tmp_path, capsys):
    """The human output has no JSON line; --json adds it as the last line; -o writes it either way."""
    from erpack.cli import main

    t = tiny.build(tmp_path)
    corpus, _ = train_first_corpus(t, tmp_path)
    args = ["bench", str(corpus), "--model", str(t["model"]), "--layer", str(tiny.LAYER), "--limit", "4",
            "--paths", "full-torch", "--repeats", "1", "--warmup", "0", "--work", str(tmp_path / "work")]
    assert main(args + ["-o", str(tmp_path / "bench.json")]) == 0
    out = capsys.readouterr().out
    assert "erpack bench: 4 documents of the test split" in out
    assert not any(line.lstrip().startswith("{") for line in out.splitlines()), out
    assert json.loads((tmp_path / "bench.json").read_text())["workload"]["split"] == "test"
    assert main(args + ["--json"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last)["kind"] == "erpack-bench"
