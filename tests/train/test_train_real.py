"""End to end on the real MiniLM and real reviews: encode a tiny cache, train from it, evaluate (CLI)."""

from __future__ import annotations

import json

import pytest

from erpack.cli import main
from tests.checkers import minilm_reviews_cache

pytestmark = pytest.mark.real


def test_minilm_reviews_encode_train_eval(tmp_path, capsys):
    sizes = {"train": 40, "validation": 12, "test": 12}
    corpus, cache = minilm_reviews_cache(tmp_path, sizes)
    out = tmp_path / "tm"
    capsys.readouterr()
    assert main(["train", str(cache), "--labels", str(corpus), "--mode", "adapter", "-o", str(out), "--epochs", "1",
                 "--batch-size", "16", "--baseline", "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["documents"] == sizes and s["layer"] == 3 and s["model"] == "minilm"
    assert s["baseline"]["notes"]["length_mismatches"] == 0
    assert 0 <= s["recycled"]["test"]["accuracy"] <= 1 and s["comparison"]["epoch_time_ratio"] > 0
    assert main(["eval", str(out), str(cache), "--labels", str(corpus), "--json"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["documents"] == 12 and r["metrics"]["accuracy"] == pytest.approx(s["recycled"]["test"]["accuracy"])
