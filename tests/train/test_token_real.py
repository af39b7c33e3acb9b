"""Truecasing BBC articles with the real MiniLM at k = 3: encode a slice, train from the cache, evaluate (CLI)."""

from __future__ import annotations

import json

import pytest

from erpack.cli import main
from tests.checkers import minilm_truecase_cache

pytestmark = [pytest.mark.real, pytest.mark.slow]


def test_minilm_truecases_bbc_from_the_cache(tmp_path, capsys):
    sizes = {"train": 48, "validation": 8, "test": 8}
    _, cache = minilm_truecase_cache(tmp_path, sizes, every=5)
    out = tmp_path / "tm"
    capsys.readouterr()
    # the built-in label source labels all 2,127 articles; the cache holds the slice
    assert main(["train", str(cache), "--labels", "bbc-truecase", "--task", "token-classification", "--skip-missing",
                 "-o", str(out), "--epochs", "1", "--batch-size", "4", "--lr", "1e-3", "--device", "cpu", "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["documents"] == sizes and s["labels"] == ["O", "CAP"]
    test = s["recycled"]["test"]
    # all-O scores micro-F1 0; capitals are 1 word in 6, so the learnt model must find some of them
    assert test["micro_f1"] > 0.3 and test["per_label"]["CAP"]["recall"] > 0.1, test
    assert test["cut_words"] > 0  # 64 tokens hold only each article's first words
    assert main(["eval", str(out), str(cache), "--labels", "bbc-truecase", "--skip-missing", "--json",
                 "--predictions", str(tmp_path / "p.jsonl")]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["metrics"]["micro_f1"] == pytest.approx(test["micro_f1"])
    first = json.loads((tmp_path / "p.jsonl").read_text().splitlines()[0])
    assert len(first["predicted"]) == len(first["words"]) and None in first["predicted"]  # words past 64 tokens
