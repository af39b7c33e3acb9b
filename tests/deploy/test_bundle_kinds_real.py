"""Bundles of the real MiniLM at k = 3: a truecasing model trained on a slice of BBC (a label per word from
text equals `erpack predict` of its graph on the cached records, words cut at max_length included), and a
Rotten Tomatoes model with patience exits (the bundle's layers and labels equal those of the exit graphs
`erpack export` writes, run by `erpack predict`)."""

from __future__ import annotations

import json

import pytest

from erpack.cli import main
from tests.checkers import minilm_reviews_cache, minilm_truecase_cache

pytestmark = [pytest.mark.real, pytest.mark.slow]


def test_minilm_truecase_bundle_labels_words_as_predict_does(tmp_path, capsys):
    from erpack.deploy import BundleRuntime

    sizes = {"train": 24, "validation": 4, "test": 8}
    chosen, cache = minilm_truecase_cache(tmp_path, sizes, every=7)
    out, bundle = tmp_path / "tm", tmp_path / "bundle"
    assert main(["train", str(cache), "--labels", "bbc-truecase", "--task", "token-classification", "--skip-missing",
                 "-o", str(out), "--epochs", "1", "--batch-size", "4", "--lr", "1e-3", "--device", "cpu"]) == 0
    assert main(["export", str(out), "--bundle", str(bundle), "--no-int8", "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["text_parity"]["argmax_agreement"] >= 0.99, s["text_parity"]
    test = [r for r in chosen if r.split == "test"]
    rows = BundleRuntime(bundle, device="cpu").predict_texts([r.text for r in test], ids=[r.id for r in test]).rows
    graph, preds = tmp_path / "g.onnx", tmp_path / "p.jsonl"
    assert main(["export", str(out), "-o", str(graph)]) == 0
    assert main(["predict", str(graph), str(cache), "--labels", "bbc-truecase", "--ids", ",".join(r.id for r in test),
                 "-o", str(preds), "--device", "cpu"]) == 0
    want = [json.loads(line) for line in preds.read_text().splitlines()]
    same = total = 0
    for a, b in zip(rows, want):
        assert a["id"] == b["id"] and a["words"] == b["words"] and a["truncated_words"] == b["truncated_words"] > 0
        same += sum(x == y for x, y in zip(a["predicted"], b["predicted"]))
        total += len(a["predicted"])
    print(f"MiniLM truecase bundle: {same} of {total} word labels from text equal the cached records'")
    assert same / total >= 0.98  # text runs the exported lower graph and the codec; the cache PyTorch's


def test_minilm_exit_bundle_stops_documents_where_the_exit_graphs_do(tmp_path, capsys):
    from erpack.deploy import BundleRuntime

    corpus, cache = minilm_reviews_cache(tmp_path, {"train": 48, "validation": 16, "test": 16})
    out, bundle = tmp_path / "tm", tmp_path / "bundle"
    assert main(["train", str(cache), "--labels", str(corpus), "--early-exit", "patience", "-o", str(out),
                 "--epochs", "1", "--batch-size", "16"]) == 0
    assert main(["export", str(out), "--bundle", str(bundle), "--calibration-cache", str(cache), "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["text_parity"]["max_diff"] < 1e-3 and all(1 <= n <= 3 for n in s["text_parity"]["exits"]["layers"])
    graph, preds = tmp_path / "g" / "rt.onnx", tmp_path / "p.jsonl"
    assert main(["export", str(out), "-o", str(graph)]) == 0
    assert main(["predict", str(graph.with_name("rt.exits")), str(cache), "-o", str(preds), "--device", "cpu"]) == 0
    want = [json.loads(line) for line in preds.read_text().splitlines()]
    rows = BundleRuntime(bundle, device="cpu").predict_ids(cache, [r["id"] for r in want]).rows
    assert [(r["predicted"], r["layers"]) for r in rows] == [(r["predicted"], r["layers"]) for r in want]
    texts = [json.loads(line)["text"] for line in corpus.read_text().splitlines()][:8]
    assert all(1 <= r["layers"] <= 3 for r in BundleRuntime(bundle, "int8", device="cpu").predict_texts(texts).rows)
