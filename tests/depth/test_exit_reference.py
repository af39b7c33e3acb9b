"""The exit budget is measured against the task head (issue 22): the head is what the same task model answers
without exits. DACT answers with the halting-weighted mixture of its exits, which may be above or below the
head; when every threshold is more than the budget below the head, the most accurate one is kept and the
record and `erpack train` say so."""

from __future__ import annotations

import json

import numpy as np
import pytest

from erpack.cli import main
from erpack.depth.rules import Rule, every_layer_scores, reference_of, simulate
from erpack.depth.threshold import candidates, choose, choose_regression, head_logits, mixture
from erpack.depth.training import budget_note
from erpack.train.metrics import regression_metrics

R, W = [4.0, -4.0], [-4.0, 4.0]  # confident class 0, class 1


def _accuracy(z, y) -> float:
    return float((z.argmax(1) == y).mean())


def test_dact_within_budget_of_the_head_when_the_mixture_beats_it():
    # 4 documents, 3 exits: exits 0 and 1 are right everywhere, the head (exit 2) on documents 0-1 only
    y = np.array([0, 1, 0, 1])
    right = np.array([R, W, R, W])
    logits = np.stack([right, right, np.array([R, W, W, R])], 1).astype(np.float32)  # (4, 3, 2)
    halting = np.zeros((4, 2), np.float32)  # h = 0.5: mixture 0.5 exit 0 + 0.25 exit 1 + 0.25 head
    c = choose("dact", logits, halting, y, budget=0.0)
    assert c["reference"] == "head" and c["within_budget"] is True
    assert c["accuracy_all_layers"] == _accuracy(head_logits(logits), y) == 0.5
    assert c["accuracy_mixture"] == _accuracy(mixture(logits, halting), y) == 1.0
    assert c["accuracy"] == 1.0 and c["mean_layers"] == 1.0 and c["threshold"] == 0.0  # the most aggressive


def test_dact_out_of_budget_keeps_the_most_accurate_threshold():
    # The head is right everywhere. Documents 1 and 2: exit 0 confidently wrong with nearly all the halting mass
    # (the mixture is wrong whatever the threshold). Document 0: exit 0 weakly wrong at half the mass, exit 1 right
    # with the rest nearly all: thresholds below 0.2 stop it wrongly at exit 0, 0.2 and above carry it to exit 1.
    y = np.array([0, 1, 0, 1])
    exit0 = np.array([[-0.2, 0.2], R, W, W])
    logits = np.stack([exit0, np.array([R, W, R, W]), np.array([R, W, R, W])], 1).astype(np.float32)
    halting = np.array([[0.0, 3.0], [3.0, 3.0], [3.0, 3.0], [3.0, 3.0]], np.float32)
    c = choose("dact", logits, halting, y, budget=0.5)
    assert c["accuracy_all_layers"] == 1.0 and c["accuracy_mixture"] == 0.5
    assert c["within_budget"] is False and c["reference"] == "head"
    assert c["threshold"] == 0.2 and c["accuracy"] == 0.5 and c["mean_layers"] == 1.25
    # the best accuracy of every candidate, with the fewest layers among the best: not the most aggressive (0.25)
    rows = []
    for t in candidates("dact", 3, logits):
        out, used = simulate(Rule("dact", t), logits, halting)
        rows.append((-_accuracy(out, y), float(used.mean()), t))
    assert min(rows) == (-c["accuracy"], c["mean_layers"], c["threshold"])
    assert _accuracy(simulate(Rule("dact", 0.0), logits, halting)[0], y) == 0.25
    note = budget_note("dact", c["threshold"], c)
    assert "within 0.5 point of the task head's 1.0000" in note and "mixture with every layer run scores 0.5000" in note
    assert "threshold 0.2" in note and "--no-early-exit" in note and "larger --exit-budget" in note


def test_regression_reference_is_the_heads_score():
    y = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    noise = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0])
    halting = np.zeros((6, 2), np.float32)  # h = 0.5 at exits 0 and 1: R_0 = 0.5, R_1 = 0.25
    # exits 0 and 1 exact, the head noise: the mixture (0.75 y + 0.25 noise) beats the head, exit 0 beats both
    scores = np.stack([y, y, noise], 1)[:, :, None]
    c = choose_regression(scores, halting, y, 0.0, regression_metrics)
    assert c["reference"] == "head" and c["within_budget"] is True
    assert c["pearson_all_layers"] == pytest.approx(regression_metrics(y, noise)["pearson"])
    assert c["pearson_mixture"] == pytest.approx(regression_metrics(y, 0.75 * y + 0.25 * noise)["pearson"])
    assert c["threshold"] == 0.5 and c["mean_layers"] == 1.0 and c["pearson"] == pytest.approx(1.0)
    # the head exact, exits 0 and 1 noise: every threshold more than 0.5 point below the head; the best r is the
    # mixture's (0.75 noise + 0.25 y, thresholds below 0.25 run every layer), the others stop on noise alone
    scores = np.stack([noise, noise, y], 1)[:, :, None]
    c = choose_regression(scores, halting, y, 0.5, regression_metrics)
    assert c["within_budget"] is False and c["pearson_all_layers"] == pytest.approx(1.0)
    assert c["threshold"] == 0.0 and c["mean_layers"] == 3.0 and c["pearson"] == pytest.approx(c["pearson_mixture"])
    assert c["pearson"] > regression_metrics(y, noise)["pearson"]
    assert "Pearson r within 0.5 point (Pearson r x 100) of the task head's 1.0000" in budget_note("dact", 0.0, c)


def test_records_before_the_head_was_the_reference_read_as_the_mixture():
    assert reference_of("dact", {"accuracy_all_layers": 0.8}) == "mixture"
    assert reference_of("patience", {"accuracy_all_layers": 0.8}) == "head"
    assert reference_of("dact", {"reference": "head"}) == "head"
    # the rule's own answer with every layer run: DACT's mixture, kept as test_all_layers before the head
    assert every_layer_scores({"test_all_layers": {"accuracy": 0.8}}) == {"accuracy": 0.8}
    assert every_layer_scores({"test_all_layers": {"accuracy": 0.8}, "test_mixture": {"accuracy": 0.7}}) == {
        "accuracy": 0.7}


def test_train_json_records_the_head_as_reference(tiny_exit, tmp_path, capsys):
    cache, labels, out = str(tiny_exit["cache"]), str(tiny_exit["labels"]), tmp_path / "tm"
    assert main(["train", cache, "--labels", labels, "--mode", "upper", "--epochs", "2", "--batch-size", "8",
                 "--lr", "1e-3", "--early-exit", "dact", "-o", str(out), "--json"]) == 0
    printed = capsys.readouterr().out
    e = json.loads(printed.strip().splitlines()[-1])["recycled"]["notes"]["early_exit"]
    v = e["validation"]
    assert e["reference"] == v["reference"] == "head" and isinstance(v["within_budget"], bool)
    assert {"accuracy", "accuracy_all_layers", "accuracy_mixture", "mean_layers", "budget"} <= set(v)
    assert "accuracy" in e["test_mixture"]
    assert ("note" in e) == (not v["within_budget"]) == ("note: no dact threshold" in printed)
    # the reference is what the model answers without exits, on validation and on test
    for split, want in (("validation", v["accuracy_all_layers"]), ("test", e["test_all_layers"]["accuracy"])):
        assert main(["eval", str(out), cache, "--labels", labels, "--split", split, "--no-early-exit", "--json"]) == 0
        got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["metrics"]["accuracy"]
        assert got == pytest.approx(want), split
    saved = json.loads((out / "erpack_task.json").read_text())["early_exit"]
    assert saved["reference"] == "head" and saved["validation"]["within_budget"] == v["within_budget"]
