"""End to end on the real MiniLM and real reviews: encode a tiny cache, train from it, evaluate (CLI)."""

from __future__ import annotations

import json

import pytest

from erpack.cli import main

pytestmark = pytest.mark.real


def test_minilm_reviews_encode_train_eval(tmp_path, capsys):
    from erpack.assets import load_dataset

    sizes = {"train": 40, "validation": 12, "test": 12}
    rows = []
    for r in load_dataset("rotten_tomatoes"):
        if sum(x["split"] == r.split for x in rows) < sizes[r.split]:
            rows.append({"id": r.id, "text": r.text, "label": r.label, "split": r.split})
    corpus = tmp_path / "rt64.jsonl"
    corpus.write_text("".join(json.dumps(x) + "\n" for x in rows))
    cache, out = tmp_path / "cache", tmp_path / "tm"
    assert main(["encode", str(corpus), "-o", str(cache), "--model", "minilm", "--layer", "3",
                 "--codec", "int8c+zstd:3", "--max-length", "64"]) == 0
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
