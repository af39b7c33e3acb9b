"""Early exit on a tiny BERT: exits train in every mode, save and load, the threshold is chosen on
validation, batch compaction gives each document what the whole batch gives it, and bad input is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from erpack.cli import main
from erpack.depth.rules import Rule, simulate
from erpack.depth.runner import ExitModel
from erpack.depth.threshold import choose
from erpack.depth.training import ExitSpec
from erpack.errors import InputError
from erpack.train import TaskModel, TrainConfig, train_from_cache
from tests.depth.conftest import FAST


@pytest.mark.parametrize("rule,mode", [("dact", "adapter"), ("dact", "head"), ("patience", "upper"),
                                       ("entropy", "head"), ("patience", "adapter")])
def test_exits_train_in_each_mode_and_only_what_the_mode_trains_changes(tiny_exit, rule, mode, tmp_path):
    from safetensors.torch import load_file

    s = train_from_cache(tiny_exit["cache"], str(tiny_exit["labels"]), mode=mode, output=tmp_path / "tm",
                         early_exit=ExitSpec(rule), config=TrainConfig(epochs=2, **FAST))
    note = s.recycled.notes["early_exit"]
    assert note["rule"] == rule and note["chosen_on"] == "validation"
    assert 1 <= s.recycled.test["mean_layers"] <= 3 and s.recycled.test["n"] == 8
    assert s.recycled.trainable_params > 0
    tm = TaskModel.load(tmp_path / "tm")
    assert tm.info["early_exit"]["exits"]["count"] == 2
    assert tm.info["files"]["exits.safetensors"]["bytes"] > 0  # sealed with the folder
    exits = load_file(str(tmp_path / "tm" / "exits.safetensors"))
    assert any(k.endswith("halt.weight") for k in exits) == (rule == "dact")
    if mode == "head":  # the upper layers stay as the encoder has them
        from transformers import AutoModel

        base = AutoModel.from_pretrained(tiny_exit["model"])
        torch.testing.assert_close(tm.model.bert.encoder.layer[2].output.dense.weight,
                                   base.encoder.layer[2].output.dense.weight)


def test_saved_exits_reload_and_eval_reports_layers(dact_model, tiny_exit, tmp_path, capsys):
    out, s = dact_model
    preds = tmp_path / "p.jsonl"
    assert main(["eval", str(out), str(tiny_exit["cache"]), "--labels", str(tiny_exit["labels"]), "--json",
                 "--predictions", str(preds)]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["metrics"]["accuracy"] == pytest.approx(s.recycled.test["accuracy"])
    assert r["mean_layers"] == pytest.approx(s.recycled.test["mean_layers"])
    assert r["mean_layers_fraction"] == pytest.approx(r["mean_layers"] / 3)
    assert r["early_exit"]["rule"] == "dact"
    lines = [json.loads(x) for x in preds.read_text().splitlines()]
    assert np.mean([x["layers"] for x in lines]) == pytest.approx(r["mean_layers"])
    assert main(["eval", str(out), str(tiny_exit["cache"]), "--labels", str(tiny_exit["labels"]), "--json",
                 "--no-early-exit"]) == 0
    full = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert full["mean_layers"] == 3 and full["early_exit"] is None
    assert full["metrics"]["n"] == r["metrics"]["n"]


def test_compaction_gives_each_document_the_whole_batch_result(dact_model, tiny_exit):
    from erpack.store import CacheReader

    tm = TaskModel.load(dact_model[0])
    ids = [r["id"] for r in tiny_exit["rows"]]
    with CacheReader(tiny_exit["cache"]) as reader:
        hidden, mask = (torch.from_numpy(a) for a in reader.get_batch(ids))
    for rule, threshold in (("dact", 0.3), ("patience", 1), ("entropy", 0.6)):
        em = ExitModel(tm, ExitModel.of(tm).exits if rule == "dact" else _exits_without_halting(tm), Rule(rule, threshold))
        z1, l1 = em.run(hidden, mask, compact=True)
        z2, l2 = em.run(hidden, mask, compact=False)
        assert np.array_equal(l1, l2), rule
        assert np.array_equal(z1.argmax(1), z2.argmax(1)), rule
        np.testing.assert_allclose(z1, z2, atol=1e-4, rtol=1e-4)
        with torch.no_grad():
            zs, hs = em.outputs(hidden, mask)
        z3, l3 = simulate(em.rule, torch.stack(zs, 1).numpy(), None if hs is None else hs.numpy())
        assert np.array_equal(l3, l1), rule  # what the threshold is chosen on
        if rule == "dact":
            assert 1 <= int(l1.min()) and int(l1.max()) <= 3


def _exits_without_halting(tm):
    from erpack.depth.exits import Exits

    exits = ExitModel.of(tm).exits
    plain = Exits(exits.hidden_size, exits.num_labels, len(exits.heads), False)
    plain.load_state_dict({k: v for k, v in exits.state_dict().items() if ".halt." not in k})
    return plain.eval()


def test_threshold_is_the_most_aggressive_within_the_budget():
    # 4 documents, 3 exits, 2 classes: exit 0 is right on documents 0-1 only, exits 1-2 on all
    y = np.array([0, 1, 0, 1])
    right = torch.tensor([[4.0, -4.0], [-4.0, 4.0], [4.0, -4.0], [-4.0, 4.0]])
    wrong = -right
    logits = torch.stack([torch.cat([right[:2], wrong[2:]]), right, right], dim=1).numpy()  # (4, 3, 2)
    strict = choose("patience", logits, None, y, budget=0.0)
    assert strict["accuracy"] == strict["accuracy_all_layers"] == 1.0  # the head's
    assert strict["reference"] == "head" and strict["within_budget"] and "accuracy_mixture" not in strict
    assert strict["threshold"] == 1.0 and strict["mean_layers"] == pytest.approx((2 + 2 + 3 + 3) / 4)
    loose = choose("entropy", logits, None, y, budget=50.0)  # half the documents may be lost: stop at exit 0
    assert loose["mean_layers"] == 1.0 and loose["accuracy"] == 0.5
    tight = choose("entropy", logits, None, y, budget=0.5)
    assert tight["accuracy"] == 1.0 and tight["mean_layers"] > 1.0


def test_dact_exact_threshold_keeps_the_every_layer_answer(dact_model, tiny_exit):
    from erpack.depth.threshold import mixture
    from erpack.store import CacheReader

    tm = TaskModel.load(dact_model[0])
    em = ExitModel.of(tm, threshold=1.0)
    ids = [r["id"] for r in tiny_exit["rows"]]
    with CacheReader(tiny_exit["cache"]) as reader:
        hidden, mask = (torch.from_numpy(a) for a in reader.get_batch(ids))
    z, _ = em.run(hidden, mask)
    with torch.no_grad():
        zs, hs = em.outputs(hidden, mask)
    assert np.array_equal(z.argmax(1), mixture(torch.stack(zs, 1).numpy(), hs.numpy()).argmax(1))


def test_bad_exit_options_are_refused(tiny_exit, dact_model, tmp_path, capsys):
    cache, labels = str(tiny_exit["cache"]), str(tiny_exit["labels"])
    with pytest.raises(InputError, match="0 to 100"):
        ExitSpec("dact", budget=150)
    with pytest.raises(InputError, match="unknown exit rule"):
        ExitSpec("halting")
    cases = [
        (["--early-exit", "dact", "--exit-threshold", "1.5"], "between 0 and 1"),
        (["--early-exit", "patience", "--exit-threshold", "0"], "whole number of layers from 1 to 3"),
        (["--early-exit", "entropy", "--exit-threshold", "5"], "ln 2"),
        (["--early-exit", "dact", "--exit-budget", "-1"], "0 to 100"),
        (["--early-exit", "patience", "--ponder", "0.1"], "DACT's penalty"),
        (["--exit-threshold", "0.5"], "add --early-exit"),
        (["--early-exit", "entropy", "--task", "regression"], "a regression score has none"),
    ]
    reg = tmp_path / "reg.jsonl"
    reg.write_text("".join(json.dumps(dict(r, label=float(i % 3))) + "\n" for i, r in enumerate(tiny_exit["rows"])))
    for flags, message in cases:
        lab = str(reg) if "regression" in flags else labels
        assert main(["train", cache, "--labels", lab, "-o", str(tmp_path / "x"), "--epochs", "1", *flags]) == 2, flags
        assert message in capsys.readouterr().err, flags
        assert not (tmp_path / "x").exists()
    plain = tmp_path / "plain"
    train_from_cache(cache, labels, mode="head", output=plain, config=TrainConfig(epochs=1, **FAST))
    assert main(["eval", str(plain), cache, "--labels", labels, "--exit-threshold", "0.5"]) == 2
    assert "has none" in capsys.readouterr().err
    assert main(["eval", str(dact_model[0]), cache, "--labels", labels, "--exit-threshold", "2"]) == 2
    assert "between 0 and 1" in capsys.readouterr().err


def test_pruning_a_model_with_exits_is_refused(dact_model, tiny_exit, tmp_path, capsys):
    assert main(["prune", str(dact_model[0]), str(tiny_exit["cache"]), "--labels", str(tiny_exit["labels"]),
                 "--heads", "0.5", "-o", str(tmp_path / "p")]) == 2
    assert "has exits" in capsys.readouterr().err and not (tmp_path / "p").exists()
