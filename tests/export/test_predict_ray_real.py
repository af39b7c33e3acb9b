"""`erpack predict --engine ray` of a real token graph: MiniLM at k = 3 truecasing a slice of BBC (the
words from the built-in label source `bbc-truecase`); the Ray parts hold the rows the single process
writes for every document, words cut at max_length included, and its per-word scores. Real Ray (tests/services.py's ray_local)."""

from __future__ import annotations

import json

import pytest

from erpack.cli import main
from tests.checkers import minilm_truecase_cache

pytestmark = [pytest.mark.real, pytest.mark.slow]
pytest.importorskip("ray", reason="the `scale` extra installs Ray")


def test_minilm_truecase_ray_parts_equal_the_single_process_rows(ray_local, tmp_path, capsys):
    from erpack.cluster.score import read_parts

    sizes = {"train": 8, "validation": 2, "test": 8}
    _, cache = minilm_truecase_cache(tmp_path, sizes, every=11)
    out, graph, preds = tmp_path / "tm", tmp_path / "g.onnx", tmp_path / "p.jsonl"
    assert main(["train", str(cache), "--labels", "bbc-truecase", "--task", "token-classification", "--skip-missing",
                 "-o", str(out), "--epochs", "1", "--batch-size", "4", "--lr", "1e-3", "--device", "cpu"]) == 0
    assert main(["export", str(out), "-o", str(graph)]) == 0
    capsys.readouterr()
    assert main(["predict", str(graph), str(cache), "--labels", "bbc-truecase", "-o", str(preds), "--device", "cpu",
                 "--json"]) == 0
    single = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    want = [json.loads(line) for line in preds.read_text().splitlines()]
    assert main(["predict", str(graph), str(cache), "--labels", "bbc-truecase", "--engine", "ray", "--part-docs", "5",
                 "--out", str(tmp_path / "parts"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["predicted"] == len(want) == sum(sizes.values()) and len(s["parts"]) == 4
    got = read_parts(tmp_path / "parts")
    assert [r["id"] for r in got] == [r["id"] for r in want]
    for a, b in zip(got, want):
        assert a == b, a["id"]  # words, a label per word (null past 64 tokens), truncated_words, true labels
    assert sum(r["truncated_words"] > 0 for r in got) > len(got) // 2  # BBC articles run past 64 tokens
    assert s["metrics"] == single["metrics"] and s["metrics"]["documents"] == len(got)
    print(f"MiniLM truecase on Ray: {len(got)} documents, {sum(len(r['words']) for r in got)} words, rows equal")
