"""Early exit for regression on a tiny BERT: the exits give scores, DACT's halting units weigh them, a document
stops by ACT's rule, the threshold is chosen on validation for a Pearson budget; eval, export and predict
give the same scores and exit layers; patience and entropy are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from erpack.cli import main
from erpack.depth.ort import ExitGraphs
from erpack.depth.rules import Rule, simulate
from erpack.depth.runner import ExitModel
from erpack.depth.threshold import choose_regression, mixture
from erpack.depth.training import ExitSpec
from erpack.train import TaskModel, TrainConfig, train_from_cache
from erpack.train.metrics import regression_metrics
from tests.depth.conftest import FAST, write_jsonl


@pytest.fixture(scope="module")
def reg(tiny_exit):
    """(labels file, task model folder, TrainSummary): a score per document (+1 pos, -1 neg, graded by length),
    a dact regression model trained on it in upper mode."""
    rows = [dict(r, label=(1.0 if r["label"] == "pos" else -1.0) * (1 + len(r["text"].split()) / 12))
            for r in tiny_exit["rows"]]
    labels = write_jsonl(tiny_exit["root"] / "reg.jsonl", rows)
    out = tiny_exit["root"] / "tm-reg-dact"
    s = train_from_cache(tiny_exit["cache"], str(labels), task="regression", mode="upper", output=out,
                         early_exit=ExitSpec("dact"), config=TrainConfig(epochs=3, **FAST))
    return labels, out, s


def _batch(tiny_exit, split=None):
    from erpack.store import CacheReader

    ids = [r["id"] for r in tiny_exit["rows"] if split is None or r["split"] == split]
    with CacheReader(tiny_exit["cache"]) as reader:
        return reader.get_batch(ids)


def test_regression_exits_train_and_record_the_threshold(reg):
    _, out, s = reg
    note, test = s.recycled.notes["early_exit"], s.recycled.test
    assert note["rule"] == "dact" and note["chosen_on"] == "validation" and 0 <= note["threshold"] <= 1
    assert note["validation"]["metric"] == "pearson" and {"pearson_all_layers", "mse"} <= set(note["validation"])
    assert {"pearson", "mse", "mean_layers", "mean_layers_fraction"} <= set(test) and 1 <= test["mean_layers"] <= 3
    assert set(note["test_all_layers"]) == set(note["test_mixture"]) == {"pearson", "mse", "n"}
    assert note["reference"] == note["validation"]["reference"] == "head"
    assert {"pearson_mixture", "mse_mixture", "within_budget"} <= set(note["validation"])
    tm = TaskModel.load(out)
    assert tm.info["early_exit"]["exits"] == dict(tm.info["early_exit"]["exits"], num_labels=1, halting=True, count=2)


def test_act_rule_compaction_and_simulation_agree(reg, tiny_exit):
    tm = TaskModel.load(reg[1])
    hidden, mask = (torch.from_numpy(a) for a in _batch(tiny_exit))
    em = ExitModel.of(tm)
    with torch.no_grad():
        zs, hs = em.outputs(hidden, mask)
    scores, halting = torch.stack(zs, 1).numpy(), hs.numpy()  # (N, 3, 1), (N, 2)
    mixed = mixture(scores, halting, regression=True)
    for t in (0.0, 0.3, 0.7, 1.0):
        em.rule = Rule("dact", t, regression=True)
        z1, l1 = em.run(hidden, mask, compact=True)
        z2, l2 = em.run(hidden, mask, compact=False)
        assert np.array_equal(l1, l2), t
        np.testing.assert_allclose(z1, z2, atol=1e-5)
        z3, l3 = simulate(em.rule, scores, halting)
        assert np.array_equal(l3, l1), t
        np.testing.assert_allclose(z3, z1, atol=1e-5)
        # ACT: stopped at layer j with R_j <= t, the output differs from the mixture by at most R_j x the spread
        spread = scores.max(1)[:, 0] - scores.min(1)[:, 0]
        assert (np.abs(z1 - mixed)[:, 0] <= t * spread + 1e-5).all(), t
    em.rule = Rule("dact", 0.0, regression=True)
    z0, l0 = em.run(hidden, mask)
    np.testing.assert_allclose(z0, mixed, atol=1e-5)  # threshold 0: the every-layer mixture
    em.rule = Rule("dact", 1.0, regression=True)
    assert (em.run(hidden, mask)[1] == 1).all()  # threshold 1: the first layer


def test_threshold_is_the_most_aggressive_within_the_pearson_budget():
    # 6 documents, 3 exits: exit 0 scores noise, exits 1-2 the labels; h = 0.5 at exits 0 and 1, so the
    # unspent mass is R_0 = 0.5, R_1 = 0.25, and the mixture is 0.5 noise + 0.25 y + 0.25 y
    y = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    noise = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0])
    scores = np.stack([noise, y, y], 1)[:, :, None]  # (6, 3, 1)
    halting = np.zeros((6, 2), np.float32)
    strict = choose_regression(scores, halting, y, 0.0, regression_metrics)
    # stopping at exit 1 gives its score the unspent 0.5: 0.5 noise + 0.5 y, the mixture itself; exit 0 is noise.
    # The head (exit 2: y, r = 1) is above every candidate: the best r, with the fewest layers, out of budget
    assert strict["threshold"] == 0.25 and strict["mean_layers"] == 2.0 and strict["within_budget"] is False
    assert strict["pearson"] == pytest.approx(strict["pearson_mixture"])
    assert strict["pearson_all_layers"] == pytest.approx(1.0) and strict["pearson"] < 0.99
    loose = choose_regression(scores, halting, y, 100.0, regression_metrics)  # any r qualifies
    assert loose["threshold"] == 0.5 and loose["mean_layers"] == 1.0  # the first (smallest) threshold that stops at 1
    assert loose["within_budget"] and loose["reference"] == "head"
    assert loose["pearson"] == pytest.approx(regression_metrics(y, noise)["pearson"])
    assert strict["metric"] == "pearson" and strict["tried"] == 101


def test_eval_reports_pearson_mse_and_layers(reg, tiny_exit, tmp_path, capsys):
    labels, out, s = reg
    cache = str(tiny_exit["cache"])
    preds = tmp_path / "p.jsonl"
    assert main(["eval", str(out), cache, "--labels", str(labels), "--json", "--predictions", str(preds)]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["metrics"]["pearson"] == pytest.approx(s.recycled.test["pearson"])
    assert r["metrics"]["mse"] == pytest.approx(s.recycled.test["mse"])
    assert r["mean_layers"] == pytest.approx(s.recycled.test["mean_layers"])
    assert r["mean_layers_fraction"] == pytest.approx(r["mean_layers"] / 3)
    lines = [json.loads(x) for x in preds.read_text().splitlines()]
    assert np.mean([x["layers"] for x in lines]) == pytest.approx(r["mean_layers"]) and "score" in lines[0]
    assert main(["eval", str(out), cache, "--labels", str(labels), "--json", "--no-early-exit"]) == 0
    full = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert full["mean_layers"] == 3 and full["early_exit"] is None and "pearson" in full["metrics"]
    head = s.recycled.notes["early_exit"]["test_all_layers"]  # the budget's reference: the model without exits
    assert full["metrics"]["pearson"] == pytest.approx(head["pearson"], abs=1e-5)
    assert main(["eval", str(out), cache, "--labels", str(labels), "--json", "--exit-threshold", "1"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["mean_layers"] == 1
    assert main(["eval", str(out), cache, "--labels", str(labels), "--exit-threshold", "1.5"]) == 2
    assert "unspent" in capsys.readouterr().err


@pytest.mark.parametrize("threshold", [None, 0.0, 0.5])
def test_onnx_exit_graphs_equal_pytorch_exit_layer_included(reg, tiny_exit, threshold):
    out = tiny_exit["root"] / "reg-graphs" / "reg.onnx"
    if not out.with_name("reg.exits").exists():
        assert main(["export", str(reg[1]), "-o", str(out)]) == 0
    hidden, mask = _batch(tiny_exit, "test")
    tm = TaskModel.load(reg[1])
    z_pt, l_pt = ExitModel.of(tm, threshold).run(torch.from_numpy(hidden), torch.from_numpy(mask))
    z_ort, l_ort = ExitGraphs(out.with_name("reg.exits"), "cpu", threshold=threshold).run(
        {"hidden_states": hidden, "attention_mask": mask})
    assert z_ort.shape == (8, 1) and np.array_equal(l_ort, l_pt)
    np.testing.assert_allclose(z_ort, z_pt, atol=1e-4)
    z_all, l_all = ExitGraphs(out.with_name("reg.exits"), "cpu", early_exit=False).run(
        {"hidden_states": hidden, "attention_mask": mask})
    assert (l_all == 3).all()
    np.testing.assert_allclose(z_all, tm.predict(torch.from_numpy(hidden), torch.from_numpy(mask)).numpy(), atol=1e-4)


def test_predict_with_regression_exit_graphs_matches_eval(reg, tiny_exit, tmp_path, capsys):
    labels, out, _ = reg
    cache = str(tiny_exit["cache"])
    graph = tmp_path / "g" / "reg.onnx"
    assert main(["export", str(out), "-o", str(graph)]) == 0
    assert main(["eval", str(out), cache, "--labels", str(labels), "--predictions", str(tmp_path / "e.jsonl")]) == 0
    assert main(["predict", str(graph.with_name("reg.exits")), cache, "--labels", str(labels), "--split", "test",
                 "-o", str(tmp_path / "o.jsonl")]) == 0
    by_id = {r["id"]: r for r in map(json.loads, (tmp_path / "e.jsonl").read_text().splitlines())}
    rows = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert len(rows) == 8
    for r in rows:
        assert r["layers"] == by_id[r["id"]]["layers"]
        assert r["score"] == pytest.approx(by_id[r["id"]]["score"], abs=1e-4)


def test_patience_and_entropy_are_refused_for_regression(reg, tiny_exit, tmp_path, capsys):
    for rule in ("patience", "entropy"):
        capsys.readouterr()
        assert main(["train", str(tiny_exit["cache"]), "--labels", str(reg[0]), "--task", "regression",
                     "--early-exit", rule, "-o", str(tmp_path / "x"), "--epochs", "1"]) == 2
        assert "a regression score has none" in capsys.readouterr().err
        assert not (tmp_path / "x").exists()


def test_exits_on_an_existing_regression_model_leave_its_scores(reg, tiny_exit, tmp_path, capsys):
    """--init a plain regression model, --mode head: only the exits and halting units train, so every layer run
    (--no-early-exit) gives the initial model's scores."""
    labels, cache = str(reg[0]), str(tiny_exit["cache"])
    plain, dact = tmp_path / "plain", tmp_path / "dact"
    assert main(["train", cache, "--labels", labels, "--task", "regression", "-o", str(plain), "--epochs", "1",
                 "--batch-size", "8"]) == 0
    assert main(["train", cache, "--labels", labels, "--init", str(plain), "--early-exit", "dact", "--mode", "head",
                 "-o", str(dact), "--epochs", "1", "--batch-size", "8"]) == 0
    scores = []
    for folder, flags in ((plain, []), (dact, ["--no-early-exit"])):
        preds = tmp_path / f"{folder.name}.jsonl"
        assert main(["eval", str(folder), cache, "--labels", labels, "--predictions", str(preds), *flags]) == 0
        scores.append([json.loads(x)["score"] for x in preds.read_text().splitlines()])
    a, b = scores
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert TaskModel.load(dact).info["early_exit"]["exits"]["num_labels"] == 1
