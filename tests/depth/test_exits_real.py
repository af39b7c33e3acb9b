"""Early exit on the real MiniLM (k = 3) and real reviews: train exits from a small RT cache, evaluate
with and without them, and check that the ONNX exit graphs stop each test document where PyTorch does."""

from __future__ import annotations

import json

import pytest

from erpack.cli import main
from tests.checkers import minilm_reviews_cache

pytestmark = pytest.mark.real


def _onnx_test_rows(task_model, cache, labels, folder) -> list[dict]:
    """`erpack predict`'s rows over the test split from the exit graphs `erpack export` writes for `task_model`."""
    graph, preds = folder / "g" / "rt.onnx", folder / "onnx.jsonl"
    assert main(["export", str(task_model), "-o", str(graph)]) == 0
    assert main(["predict", str(graph.with_name("rt.exits")), str(cache), "--labels", str(labels), "--split", "test",
                 "-o", str(preds)]) == 0
    return [json.loads(line) for line in preds.read_text().splitlines()]

def test_minilm_reviews_exits_train_eval_and_onnx_parity(tmp_path, capsys):
    corpus, cache = minilm_reviews_cache(tmp_path, {"train": 48, "validation": 16, "test": 16})
    out = tmp_path / "tm"
    capsys.readouterr()
    assert main(["train", str(cache), "--labels", str(corpus), "--early-exit", "patience", "-o", str(out),
                 "--epochs", "1", "--batch-size", "16", "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    note = s["recycled"]["notes"]["early_exit"]
    assert note["rule"] == "patience" and 1 <= note["threshold"] <= 3
    assert 1 <= s["recycled"]["test"]["mean_layers"] <= 3
    preds = tmp_path / "eval.jsonl"
    assert main(["eval", str(out), str(cache), "--labels", str(corpus), "--json", "--predictions", str(preds)]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["metrics"]["accuracy"] == pytest.approx(s["recycled"]["test"]["accuracy"])
    assert r["mean_layers"] == pytest.approx(s["recycled"]["test"]["mean_layers"])
    assert main(["eval", str(out), str(cache), "--labels", str(corpus), "--json", "--no-early-exit"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["mean_layers"] == 3
    torch_rows = {x["id"]: x for x in map(json.loads, preds.read_text().splitlines())}
    for x in _onnx_test_rows(out, cache, corpus, tmp_path):
        assert (x["predicted"], x["layers"]) == (torch_rows[x["id"]]["predicted"], torch_rows[x["id"]]["layers"])


def test_minilm_reviews_regression_exits_eval_and_onnx_parity(tmp_path, capsys):
    """A real score on real text: each review's Rotten Tomatoes verdict as 1.0 (fresh) or 0.0 (rotten)."""
    corpus, cache = minilm_reviews_cache(tmp_path, {"train": 48, "validation": 16, "test": 16})
    scores = tmp_path / "rt-score.jsonl"
    scores.write_text("".join(json.dumps(dict(x, label=1.0 if x["label"] == "fresh" else 0.0)) + "\n"
                              for x in map(json.loads, corpus.read_text().splitlines())))
    out = tmp_path / "tm"
    capsys.readouterr()
    assert main(["train", str(cache), "--labels", str(scores), "--task", "regression", "--early-exit", "dact",
                 "-o", str(out), "--epochs", "1", "--batch-size", "16", "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    note, test = s["recycled"]["notes"]["early_exit"], s["recycled"]["test"]
    assert note["rule"] == "dact" and note["validation"]["metric"] == "pearson" and 0 <= note["threshold"] <= 1
    assert 1 <= test["mean_layers"] <= 3 and "mse" in test
    preds = tmp_path / "eval.jsonl"
    assert main(["eval", str(out), str(cache), "--labels", str(scores), "--json", "--predictions", str(preds)]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["metrics"]["mse"] == pytest.approx(test["mse"]) and r["mean_layers"] == pytest.approx(test["mean_layers"])
    torch_rows = {x["id"]: x for x in map(json.loads, preds.read_text().splitlines())}
    for x in _onnx_test_rows(out, cache, scores, tmp_path):
        assert x["layers"] == torch_rows[x["id"]]["layers"]
        assert x["score"] == pytest.approx(torch_rows[x["id"]]["score"], abs=1e-4)
