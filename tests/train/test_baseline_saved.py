"""`erpack train --baseline` saves the baseline as OUT/baseline: a task model computing from text that
`erpack eval` scores (on the texts, the same as training reported) and `erpack export` writes whole."""

from __future__ import annotations

import json

import numpy as np
import pytest

from erpack.cli import main
from erpack.train import TaskModel


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("baseline") / "task"
    assert main(["train", str(tiny["cache"]), "--labels", str(tiny["labels"]), "-o", str(out), "--epochs", "2",
                 "--mode", "head", "--baseline", "--json"]) == 0
    return out


def test_baseline_is_saved_beside_the_recycled_model(trained, capsys):
    base = TaskModel.load(trained / "baseline")
    assert base.input == "text" and base.mode == "full" and base.tokenizer is not None
    assert TaskModel.load(trained).input == "cache"
    assert main(["inspect", str(trained / "baseline")]) == 0
    assert "computes from text" in capsys.readouterr().out


def test_eval_scores_the_baseline_on_text_as_training_did(trained, tiny, tmp_path, capsys):
    summary = json.loads((trained / "baseline" / "erpack_task.json").read_text())["training"]
    preds = tmp_path / "p.jsonl"
    assert main(["eval", str(trained / "baseline"), str(tiny["cache"]), "--labels", str(tiny["labels"]),
                 "--predictions", str(preds), "--json"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["mode"] == "full" and r["documents"] == summary["documents"]["test"]
    assert any("computes from text" in n for n in r["notes"])
    assert np.isclose(r["metrics"]["accuracy"], summary["baseline"]["test"]["accuracy"])
    assert len(preds.read_text().splitlines()) == r["documents"]


def test_export_writes_the_baseline_whole_and_refuses_its_upper_stack(trained, tmp_path, capsys):
    from erpack.export.metadata import read_metadata

    out = tmp_path / "base.onnx"
    assert main(["export", str(trained / "baseline"), "-o", str(out), "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["part"] == "full" and s["parity"]["passed"]
    meta = read_metadata(out)
    assert meta["part"] == "full" and meta["outputs"] == ["logits"]
    assert main(["export", str(trained / "baseline"), "-o", str(tmp_path / "up.onnx"), "--part", "upper"]) == 2
    err = capsys.readouterr().err
    assert "computes from text" in err and "--part full" in err
    assert not (tmp_path / "up.onnx").exists()


def test_prune_refuses_the_baseline(trained, tiny, tmp_path, capsys):
    assert main(["prune", str(trained / "baseline"), str(tiny["cache"]), "--labels", str(tiny["labels"]),
                 "--heads", "0.3", "--epochs", "0", "-o", str(tmp_path / "p")]) == 2
    assert "computes from text" in capsys.readouterr().err and not (tmp_path / "p").exists()
