"""Exits on a pruned task model: `erpack train --init TASK_MODEL --early-exit RULE` starts from a model
`erpack prune` made, keeps its pruned shapes, and the saved model runs in eval, export (per-layer exit
graphs) and predict; --init is refused where it does not apply."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from erpack.cli import main
from erpack.depth.ort import ExitGraphs
from erpack.depth.runner import ExitModel
from erpack.train import TaskModel
from tests.depth.conftest import FAST


@pytest.fixture(scope="module")
def pruned(tiny_exit):
    """A plain task model (upper mode) on the tiny layer-1 cache, pruned to half its heads and neurons."""
    from erpack.prune import Fractions, prune_task_model
    from erpack.train import TrainConfig, train_from_cache

    root = tiny_exit["root"]
    train_from_cache(tiny_exit["cache"], str(tiny_exit["labels"]), mode="upper", output=root / "tm-plain",
                     config=TrainConfig(epochs=2, **FAST))
    prune_task_model(root / "tm-plain", tiny_exit["cache"], str(tiny_exit["labels"]), Fractions(heads=0.5, ffn=0.5),
                     output=root / "tm-pruned", recovery=None, samples=16)
    return root / "tm-pruned"


@pytest.fixture(scope="module")
def exits_on_pruned(pruned, tiny_exit):
    out = tiny_exit["root"] / "tm-pruned-dact"
    assert main(["train", str(tiny_exit["cache"]), "--labels", str(tiny_exit["labels"]), "--init", str(pruned),
                 "--early-exit", "dact", "--mode", "head", "--epochs", "2", "--batch-size", "8", "--lr", "1e-3",
                 "-o", str(out), "--json"]) == 0
    return out


def _shapes(model) -> dict:
    return {n: tuple(p.shape) for n, p in model.state_dict().items()}


def test_head_mode_keeps_the_pruned_model_frozen_and_its_shapes(pruned, exits_on_pruned):
    before, after = TaskModel.load(pruned), TaskModel.load(exits_on_pruned)
    assert after.info["pruning"] == before.info["pruning"] and after.info["early_exit"]["rule"] == "dact"
    assert after.info["init"]["mode"] == before.mode and after.mode == "head"
    assert _shapes(after.model) == _shapes(before.model)
    for name, p in before.model.state_dict().items():  # head mode with exits: only the exits trained
        torch.testing.assert_close(after.model.state_dict()[name], p)
    full = {n: s for n, s in _shapes(TaskModel.load(pruned.parent / "tm-plain").model).items()}
    assert any(full[n] != s for n, s in _shapes(after.model).items())  # it is pruned


def test_eval_with_and_without_exits(pruned, exits_on_pruned, tiny_exit, capsys):
    cache, labels = str(tiny_exit["cache"]), str(tiny_exit["labels"])
    capsys.readouterr()
    assert main(["eval", str(exits_on_pruned), cache, "--labels", labels, "--json"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 1 <= r["mean_layers"] <= 3 and r["early_exit"]["rule"] == "dact"
    assert main(["eval", str(exits_on_pruned), cache, "--labels", labels, "--json", "--no-early-exit"]) == 0
    every = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["eval", str(pruned), cache, "--labels", labels, "--json"]) == 0
    plain = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert every["mean_layers"] == 3
    assert every["metrics"]["accuracy"] == pytest.approx(plain["metrics"]["accuracy"])  # the frozen pruned model


def test_onnx_exit_graphs_equal_pytorch_on_the_pruned_model(exits_on_pruned, tiny_exit, tmp_path):
    from erpack.store import CacheReader

    out = tmp_path / "tm.onnx"
    assert main(["export", str(exits_on_pruned), "-o", str(out), "--quantize", "dynamic", "--json"]) == 0
    ids = [r["id"] for r in tiny_exit["rows"] if r["split"] == "test"]
    with CacheReader(tiny_exit["cache"]) as reader:
        hidden, mask = reader.get_batch(ids)
    tm = TaskModel.load(exits_on_pruned)
    for threshold in (None, 0.2):
        z_pt, l_pt = ExitModel.of(tm, threshold).run(torch.from_numpy(hidden), torch.from_numpy(mask))
        z_ort, l_ort = ExitGraphs(out.with_name("tm.exits"), "cpu", threshold=threshold).run(
            {"hidden_states": hidden, "attention_mask": mask})
        assert np.array_equal(l_ort, l_pt)
        assert np.array_equal(z_ort.argmax(1), z_pt.argmax(1))
        np.testing.assert_allclose(z_ort, z_pt, atol=1e-4)
    pred = tmp_path / "p.jsonl"
    assert main(["predict", str(out.with_name("tm.exits-int8")), str(tiny_exit["cache"]), "--labels",
                 str(tiny_exit["labels"]), "--split", "test", "-o", str(pred)]) == 0
    rows = [json.loads(x) for x in pred.read_text().splitlines()]
    assert len(rows) == len(ids) and all(1 <= r["layers"] <= 3 for r in rows)


def test_upper_mode_trains_the_pruned_layers_and_keeps_their_shapes(pruned, tiny_exit, tmp_path):
    from erpack.depth.training import ExitSpec
    from erpack.train import TrainConfig, train_from_cache

    s = train_from_cache(tiny_exit["cache"], str(tiny_exit["labels"]), task=None, mode="upper", init=str(pruned),
                         output=tmp_path / "tm", early_exit=ExitSpec("patience"), config=TrainConfig(epochs=1, **FAST))
    assert s.task == "classification" and 1 <= s.recycled.test["mean_layers"] <= 3
    before, after = TaskModel.load(pruned), TaskModel.load(tmp_path / "tm")
    assert _shapes(after.model) == _shapes(before.model)
    assert not torch.equal(after.model.bert.encoder.layer[2].output.dense.weight,
                           before.model.bert.encoder.layer[2].output.dense.weight)


def test_init_without_exits_continues_training(pruned, tiny_exit, tmp_path):
    out = tmp_path / "more"
    assert main(["train", str(tiny_exit["cache"]), "--labels", str(tiny_exit["labels"]), "--init", str(pruned),
                 "--epochs", "1", "--batch-size", "8", "-o", str(out)]) == 0
    assert TaskModel.load(out).info["pruning"] == TaskModel.load(pruned).info["pruning"]


def test_init_is_refused_where_it_does_not_apply(pruned, exits_on_pruned, tiny_exit, tiny_caches, tmp_path, capsys):
    cache, labels = str(tiny_exit["cache"]), str(tiny_exit["labels"])
    cases = [
        (["--baseline", "--early-exit", "dact"], "--baseline"),
        (["--mode", "adapter", "--early-exit", "dact"], "adapter"),
        (["--shared-block"], "--shared-block"),
        (["--task", "regression"], "does not match"),
    ]
    for flags, says in cases:
        capsys.readouterr()
        assert main(["train", cache, "--labels", labels, "--init", str(pruned), "-o", str(tmp_path / "x"),
                     "--epochs", "1", *flags]) == 2, flags
        assert says in capsys.readouterr().err, flags
    assert main(["train", cache, "--labels", labels, "--init", str(exits_on_pruned), "--early-exit", "dact",
                 "-o", str(tmp_path / "x"), "--epochs", "1"]) == 2
    assert "has exits already" in capsys.readouterr().err
    # the same model on another cache (tiny BERT at layer 2): the cache check refuses it
    assert main(["train", str(tiny_caches["bert"]), "--labels", str(tiny_caches["labels"]), "--init", str(pruned),
                 "--early-exit", "dact", "-o", str(tmp_path / "x"), "--epochs", "1"]) == 2
    assert not (tmp_path / "x").exists()
