"""Metrics on known cases, `erpack eval` predictions, and the train/eval CLI on a tiny model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from erpack.cli import main
from erpack.train.metrics import classification_metrics, regression_metrics


def test_classification_metrics_known_case():
    m = classification_metrics([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0], num_classes=3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # F1: class 0: tp1 fp1 fn1 -> 0.5; class 1: tp2 fp1 fn0 -> 0.8; class 2: tp1 fp0 fn1 -> 2/3
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert classification_metrics([0, 1], [0, 1], 3)["macro_f1"] == 1.0  # class 2 absent on both sides


def test_regression_metrics_known_case():
    m = regression_metrics([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])
    assert m["pearson"] == pytest.approx(1.0) and m["mse"] == pytest.approx((1 + 4 + 9) / 3)
    assert math.isnan(regression_metrics([1.0, 1.0], [0.0, 1.0])["pearson"])


def test_batch_plan_is_seeded_and_complete():
    from erpack.train.data import batch_plan

    lengths = list(np.random.default_rng(0).integers(1, 50, 103))
    a, b = batch_plan(lengths, 8, seed=1, epoch=0), batch_plan(lengths, 8, seed=1, epoch=0)
    assert a == b and a != batch_plan(lengths, 8, seed=1, epoch=1)
    assert sorted(i for batch in a for i in batch) == list(range(103))


def test_train_and_eval_cli(tiny, tmp_path, capsys):
    out, preds = tmp_path / "tm", tmp_path / "p.jsonl"
    code = main(["train", str(tiny["cache"]), "--labels", str(tiny["labels"]), "--mode", "adapter", "--adapter", "ia3",
                 "--adapter-norms", "-o", str(out), "--baseline", "--epochs", "2", "--batch-size", "8", "--json"])
    assert code == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["baseline"]["mode"] == "full" and s["comparison"]["metric"] == "accuracy"
    assert s["baseline"]["notes"]["length_mismatches"] == 0  # text tokens == cached tokens
    adapter = json.loads((out / "erpack_task.json").read_text())["adapter"]
    assert adapter["kind"] == "ia3" and adapter["norms"] is True  # the saved model says what trained
    code = main(["eval", str(out), str(tiny["cache"]), "--labels", str(tiny["labels"]), "--split", "test",
                 "--predictions", str(preds), "--json"])
    assert code == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    lines = [json.loads(x) for x in preds.read_text().splitlines()]
    assert r["documents"] == len(lines) == 8
    assert set(lines[0]) == {"id", "label", "predicted", "probabilities"}
    acc = np.mean([x["label"] == x["predicted"] for x in lines])
    assert r["metrics"]["accuracy"] == pytest.approx(acc)
    assert sum(lines[0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)


def test_train_cli_lora_rank_alpha_and_dora_reach_the_saved_config(tiny, tmp_path, capsys):
    out = tmp_path / "tm"
    code = main(["train", str(tiny["cache"]), "--labels", str(tiny["labels"]), "--mode", "adapter", "--rank", "4",
                 "--alpha", "2", "--dora", "-o", str(out), "--epochs", "1", "--batch-size", "8"])
    assert code == 0
    adapter = json.loads((out / "erpack_task.json").read_text())["adapter"]
    assert (adapter["kind"], adapter["r"], adapter["alpha"], adapter["dora"]) == ("lora", 4, 2, True)
    assert "norms" not in adapter
    assert main(["train", str(tiny["cache"]), "--labels", str(tiny["labels"]), "--mode", "adapter", "--alpha", "0",
                 "-o", str(tmp_path / "bad")]) == 2
    assert "alpha must be > 0" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_eval_cli_error_names_the_task_model(tiny, tmp_path, capsys):
    code = main(["eval", str(tmp_path), str(tiny["cache"]), "--labels", str(tiny["labels"])])
    assert code == 2 and "not an erpack task model" in capsys.readouterr().err


def test_train_with_adapters_prints_no_warning_that_reads_like_a_broken_install(tiny, tmp_path):
    """peft 0.21 on transformers 5.24 warned FutureWarning (`is_gradient_checkpointing`), and importing
    peft made bitsandbytes log its kernels-community notice: a fresh `erpack train` shows neither."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "erpack", "train", str(tiny["cache"]), "--labels", str(tiny["labels"]),
                           "--mode", "adapter", "-o", str(tmp_path / "tm"), "--epochs", "1", "--batch-size", "8"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    for noise in ("FutureWarning", "kernels-community", "Traceback"):
        assert noise not in done.stderr, done.stderr
