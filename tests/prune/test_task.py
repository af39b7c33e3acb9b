"""`erpack prune` end to end on a tiny task model: importance, cut, LoRA recovery, save, load, eval, CLI."""

from __future__ import annotations

import json

import pytest
import torch

from erpack.models.prunable import layer_list
from erpack.prune import Fractions, RecoveryConfig, describe_importance, prune_task_model
from erpack.train import TaskModel, TrainConfig
from tests.checkers import Bars


def _batch(hidden_size: int = 32):
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 5, hidden_size, generator=g), torch.ones(2, 5, dtype=torch.long)


def test_prune_recover_save_load(tiny_task, tmp_path):
    out = tmp_path / "pruned"
    recovery = RecoveryConfig(rank=2, epochs=1, distill=True)
    tm, s = prune_task_model(tiny_task["task_model"], tiny_task["cache"], str(tiny_task["labels"]),
                             Fractions(heads=0.5, ffn=0.5), output=out, recovery=recovery, samples=16,
                             train_cfg=TrainConfig(epochs=1, lr=1e-3, batch_size=8))
    assert s.plan.counts()["heads_kept"] == 6 and s.plan.counts()["heads_total"] == 12  # layers 1..3, 4 heads each
    assert s.params_after < s.params_before
    assert s.recovery.notes["targets"] > 0 and "accuracy" in s.test
    assert not any("lora" in n for n, _ in tm.model.named_parameters())  # merged
    loaded = TaskModel.load(out)
    hidden, mask = _batch()
    assert torch.equal(tm.predict(hidden, mask), loaded.predict(hidden, mask))
    assert loaded.info["pruning"]["plan"]["heads_kept"] == 6
    assert sum(len(layer.attention.self.erpack_original_heads) for layer in layer_list(loaded.model)[1:]) == 6
    d = describe_importance(out)
    assert [r["layer"] for r in d["layers"]] == [1, 2, 3] and d["pruning"]["num_hidden_layers"] == 4

    from erpack.train import evaluate

    r = evaluate(loaded, tiny_task["cache"], str(tiny_task["labels"]), split="test", device="cpu")
    assert abs(r.metrics["accuracy"] - s.test["accuracy"]) < 1e-9


def test_cli_prune_with_a_params_budget(tiny_task, tmp_path, capsys):
    from erpack.cli import main

    out = tmp_path / "cli"
    code = main(["prune", str(tiny_task["task_model"]), str(tiny_task["cache"]), "--labels", str(tiny_task["labels"]),
                 "--params-budget", "0.7", "--epochs", "0", "--samples", "8", "-o", str(out), "--json"])
    assert code == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["params_after"] <= 0.7 * s["params_before"] and s["recovery"] is None
    assert TaskModel.load(out).layer == 1


def test_importance_scoring_has_a_bar_and_the_unpruned_score_is_kept(tiny_task, tmp_path):
    bars = Bars()
    _, s = prune_task_model(tiny_task["task_model"], tiny_task["cache"], str(tiny_task["labels"]), Fractions(0.0, 0.0),
                            samples=8, progress=bars)
    importance = [b for b in bars.bars if b["desc"] == "importance"]
    assert importance and importance[0]["total"] == 8 and importance[0]["done"] == 8 and importance[0]["closed"]
    assert s.test_unpruned["accuracy"] == pytest.approx(s.test["accuracy"])  # nothing pruned, no recovery


def test_cli_prints_the_unpruned_score_beside_the_pruned_one(tiny_task, tmp_path, capsys):
    from erpack.cli import main

    code = main(["prune", str(tiny_task["task_model"]), str(tiny_task["cache"]), "--labels", str(tiny_task["labels"]),
                 "--heads", "0.5", "--epochs", "0", "--samples", "8", "-o", str(tmp_path / "p"), "--json"])
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    s = json.loads(out[-1])
    test = next(x for x in out if x.startswith("test "))
    assert f"accuracy {s['test']['accuracy']:.4f} (unpruned {s['test_unpruned']['accuracy']:.4f}, " in test


def test_cli_refuses_two_targets(tiny_task, tmp_path, capsys):
    from erpack.cli import main

    code = main(["prune", str(tiny_task["task_model"]), str(tiny_task["cache"]), "--labels", str(tiny_task["labels"]),
                 "--heads", "0.2", "--params-budget", "0.5", "-o", str(tmp_path / "x")])
    assert code == 2 and "one target" in capsys.readouterr().err


def test_taskmodel_load_reads_a_pruned_folder(tiny_task, tmp_path):
    out = tmp_path / "p"
    tm, _ = prune_task_model(tiny_task["task_model"], tiny_task["cache"], str(tiny_task["labels"]),
                             Fractions(heads=0.3, ffn=0.3), output=out, recovery=None, samples=8)
    hidden, mask = _batch()
    assert torch.equal(tm.predict(hidden, mask), TaskModel.load(out).predict(hidden, mask))


def test_inspect_shows_a_pruned_task_models_importance(tiny_task, tmp_path, capsys):
    import json

    from erpack.cli import main

    out = tmp_path / "p"
    prune_task_model(tiny_task["task_model"], tiny_task["cache"], str(tiny_task["labels"]),
                     Fractions(heads=0.3, ffn=0.3), output=out, recovery=None, samples=8)
    assert main(["inspect", str(out), "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    data = json.loads(lines[-1])
    scored = data["importance"]["layers"]
    assert scored and all(len(row["heads"]) > 0 for row in scored)
    assert any(line.startswith(f"layer {scored[0]['layer']}") for line in lines)
    assert any(line.startswith("pruning") for line in lines)


def test_prune_output_is_sealed_refused_when_it_exists_and_replaced_with_overwrite(tiny_task, tmp_path, capsys):
    from erpack.cli import main
    out = tmp_path / "p"
    argv = ["prune", str(tiny_task["task_model"]), str(tiny_task["cache"]), "--labels", str(tiny_task["labels"]),
            "--heads", "0.3", "--ffn", "0.3", "--epochs", "0", "--samples", "8", "-o", str(out)]
    assert main(argv) == 0
    files = json.loads((out / "erpack_task.json").read_text())["files"]
    assert "erpack_importance.safetensors" in files and "model.safetensors" in files  # sealed with the model
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{out} exists already" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert main(argv[:-4] + ["--heads", "0.5", "--samples", "8", "-o", str(out), "--overwrite"]) == 0
    assert TaskModel.load(out).info["pruning"]["target"]["heads"] == 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


def test_the_summary_is_typed_and_its_dict_is_the_json_and_the_stored_record(tiny_task, tmp_path, capsys):
    """prune_task_model returns a PruneSummary; as_dict() has the keys `erpack prune --json` always had, and the
    pruned folder's erpack_task.json keeps record() under pruning.summary."""
    from erpack.cli import main
    from erpack.prune import Plan
    from erpack.prune.task import PruneSummary

    out = tmp_path / "p"
    _, s = prune_task_model(tiny_task["task_model"], tiny_task["cache"], str(tiny_task["labels"]), Fractions(0.5, 0.5),
                            output=out, samples=8)
    assert isinstance(s, PruneSummary) and isinstance(s.plan, Plan) and s.recovery is None
    d = json.loads(json.dumps(s.as_dict()))
    keys = ["task_model", "cache", "layer", "task", "output", "cache_notes", "importance_seconds", "test_unpruned",
            "target", "plan", "params_before", "params_after", "recovery", "test", "seconds"]
    assert list(d) == keys and d["plan"]["heads_kept"] == 6 and d["plan"]["layers"] and d["output"] == str(out)
    stored = json.loads((out / "erpack_task.json").read_text())["pruning"]["summary"]
    assert stored == {k: d[k] for k in ("params_before", "params_after", "test", "test_unpruned")}
    code = main(["prune", str(tiny_task["task_model"]), str(tiny_task["cache"]), "--labels", str(tiny_task["labels"]),
                 "--heads", "0.5", "--ffn", "0.5", "--epochs", "0", "--samples", "8", "-o", str(tmp_path / "c"),
                 "--json"])
    assert code == 0 and list(json.loads(capsys.readouterr().out.splitlines()[-1])) == keys
