"""ODE steps over a shared upper stack: tiny random ALBERT and a block distilled from a tiny BERT."""

from __future__ import annotations

import json

import pytest
import torch

from erpack.cli import main
from erpack.depth.ode import OdeUpper, StepDraws, matched_steps, schedule
from erpack.models import split_model
from tests.checkers import padded_batch, tiny_model


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_albert_unit_steps_are_the_upper_stack(k):
    model = tiny_model("albert", num_labels=3)
    lower, upper = split_model(model, k)
    ids, mask = padded_batch([5, 9, 2])
    with torch.no_grad():
        hidden = lower(ids, mask)
        plain, stepped = upper(hidden, mask), OdeUpper(model, k, 4 - k, beta=1.0)(hidden, mask)
        fewer = OdeUpper(model, k, 1)(hidden, mask)
    assert (plain - stepped).abs().max().item() <= 1e-5
    assert fewer.shape == plain.shape and torch.isfinite(fewer).all()


def test_steps_keep_the_groups_in_order():
    assert schedule(2, 6, 4) == [2, 3, 4, 5] and schedule(2, 6, 2) == [2, 4] and schedule(0, 4, 8)[::2] == [0, 1, 2, 3]


def test_beta_scales_the_step():
    model = tiny_model("albert", num_labels=2)
    lower, _ = split_model(model, 2)
    ids, mask = padded_batch([6, 4])
    with torch.no_grad():
        hidden = lower(ids, mask)
        one = OdeUpper(model, 2, 1, beta=0.5)
        block = one.blocks[0]
        want = hidden + 0.5 * (block(hidden, mask) - hidden)
        assert torch.allclose(one.trajectory(hidden, mask)[-1], want, atol=1e-6)


def _train(cache, labels, out, *extra):
    return main(["train", str(cache), "--labels", str(labels), "--shared-block", "--epochs", "2", "--batch-size", "8",
                 "--lr", "1e-3", "--device", "cpu", "-o", str(out), "--json", *extra])


@pytest.fixture(scope="module")
def distilled(tiny_caches, tmp_path_factory):
    out = tmp_path_factory.mktemp("ode") / "tm"
    assert _train(tiny_caches["bert"], tiny_caches["labels"], out, "--distill-epochs", "2") == 0
    return out


def test_distilled_block_task_model_evaluates_at_several_steps(distilled, tiny_caches, capsys):
    from erpack.train import TaskModel

    tm = TaskModel.load(distilled)
    ode = tm.info["ode"]
    assert ode["steps_trained"] == 2 and set(ode["betas"]) == {"1", "2"} and ode["block"]["kind"] == "distilled"
    assert len(ode["block"]["distill"]) == 2 and ode["block"]["init"] == "mean"
    layers = tm.model.bert.encoder.layer  # every upper layer holds the block
    assert all(torch.equal(layers[2].state_dict()[n], layers[3].state_dict()[n]) for n in layers[2].state_dict())
    capsys.readouterr()
    results = {}
    for steps in (None, 1, 2, 4):
        args = ["eval", str(distilled), str(tiny_caches["bert"]), "--labels", str(tiny_caches["labels"]), "--json",
                "--device", "cpu"] + ([] if steps is None else ["--steps", str(steps)])
        assert main(args) == 0
        results[steps] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert results[None]["mean_layers"] == 2 and results[1]["mean_layers"] == 1 and results[4]["mean_layers"] == 4
    assert results[2]["metrics"] == results[None]["metrics"]  # L-k steps of size 1: the stack as trained
    assert results[2]["metrics"]["accuracy"] >= 0.7


def test_albert_shared_block_skips_distillation(tiny_caches, tmp_path, capsys):
    out = tmp_path / "albert"
    assert _train(tiny_caches["albert"], tiny_caches["labels"], out) == 0
    record = json.loads((out / "erpack_task.json").read_text())["ode"]
    assert record["block"] == {"kind": "albert", "groups": [1]} and set(record["betas"]) == {"1", "2"}
    preds = tmp_path / "p.jsonl"
    assert main(["eval", str(out), str(tiny_caches["albert"]), "--labels", str(tiny_caches["labels"]), "--steps", "1",
                 "--predictions", str(preds), "--device", "cpu"]) == 0
    assert all(json.loads(line)["layers"] == 1 for line in preds.read_text().splitlines())


def test_step_draws_are_seeded_and_cover_every_step_count():
    a, b, other = StepDraws(3, seed=0), StepDraws(3, seed=0), StepDraws(3, seed=1)
    first = [a.draw() for _ in range(60)]
    assert first == [b.draw() for _ in range(60)] and first != [other.draw() for _ in range(60)]
    assert set(first) == {1, 2, 3} and sum(a.counts.values()) == 60
    assert a.record() == {"seed": 0, "choices": [1, 2, 3], "beta": "(L-k)/S", "draws": a.counts}


def test_random_steps_training_records_its_draws_and_repeats_under_a_seed(tiny_caches, tmp_path, capsys):
    from erpack.train import TaskModel

    records = []
    for run in ("a", "b"):
        out = tmp_path / run
        assert _train(tiny_caches["bert"], tiny_caches["labels"], out, "--distill-epochs", "1", "--random-steps",
                      "--seed", "3") == 0
        records.append(json.loads((out / "erpack_task.json").read_text())["ode"])
    drawn = records[0]["random_steps"]
    assert drawn["seed"] == 3 and drawn["choices"] == [1, 2] and set(drawn["draws"]) == {"1", "2"}
    assert sum(drawn["draws"].values()) == 10  # 40 documents in batches of 8, 2 epochs: one draw a batch
    for key in ("random_steps", "betas", "validation"):  # same seed: same draws, same model
        assert records[0][key] == records[1][key]
    tm = TaskModel.load(tmp_path / "a")  # an ordinary shared-block task model: eval at every S
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "a"), str(tiny_caches["bert"]), "--labels", str(tiny_caches["labels"]),
                 "--steps", "1", "--json", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["mean_layers"] == 1
    assert tm.info["ode"]["steps_trained"] == 2


def test_matched_steps_pair_the_steps_that_land_on_a_layer():
    assert matched_steps(3, 3) == [(0, 0), (1, 1), (2, 2)]  # unit steps: every layer, as plain distillation
    assert matched_steps(3, 1) == [(0, 2)] and matched_steps(3, 2) == [(1, 2)]  # only the final state
    assert matched_steps(6, 4) == [(1, 2), (3, 5)]  # 1.5, 3, 4.5, 6 layers: 3 and 6 are whole
    assert StepDraws(3, 0, salt=(1,)).rng.integers(0, 10**9) != StepDraws(3, 0).rng.integers(0, 10**9)


def test_random_distill_records_its_own_draws(tiny_caches, tmp_path):
    out = tmp_path / "rd"
    assert _train(tiny_caches["bert"], tiny_caches["labels"], out, "--distill-epochs", "1", "--random-steps",
                  "--random-distill") == 0
    ode = json.loads((out / "erpack_task.json").read_text())["ode"]
    drawn = ode["block"]["distill_random_steps"]
    assert drawn["choices"] == [1, 2] and sum(drawn["draws"].values()) == 5  # 40 documents, batches of 8, 1 epoch
    assert ode["block"]["distill"][0]["epoch"] == 1 and "random_steps" in ode


def test_random_steps_needs_a_shared_block(tiny_caches, tmp_path, capsys):
    assert main(["train", str(tiny_caches["bert"]), "--labels", str(tiny_caches["labels"]), "--random-steps",
                 "--epochs", "1", "--device", "cpu", "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "--random-steps" in err and "--shared-block" in err
    assert not (tmp_path / "x").exists()
    assert main(["train", str(tiny_caches["bert"]), "--labels", str(tiny_caches["labels"]), "--shared-block",
                 "--random-distill", "--epochs", "1", "--device", "cpu", "-o", str(tmp_path / "y")]) == 2
    assert "add --random-steps" in capsys.readouterr().err


def test_steps_errors(distilled, tiny_caches, tmp_path, capsys):
    plain = tmp_path / "plain"
    assert main(["train", str(tiny_caches["bert"]), "--labels", str(tiny_caches["labels"]), "--epochs", "1",
                 "--device", "cpu", "-o", str(plain)]) == 0
    capsys.readouterr()
    base = ["eval", "--labels", str(tiny_caches["labels"]), "--device", "cpu"]
    assert main(base + [str(plain), str(tiny_caches["bert"]), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "--shared-block" in err and str(plain) in err
    for bad in ("0", "9"):
        assert main(base + [str(distilled), str(tiny_caches["bert"]), "--steps", bad]) == 2
        assert "must be an integer from 1 to 8" in capsys.readouterr().err
    assert main(["train", str(tiny_caches["bert"]), "--labels", str(tiny_caches["labels"]), "--shared-block",
                 "--mode", "head", "-o", str(tmp_path / "x")]) == 2
    assert "--shared-block" in capsys.readouterr().err


def test_export_steps_graph_matches_pytorch_and_predict_checks_it(distilled, tiny_caches, tmp_path, capsys):
    cache, labels = str(tiny_caches["bert"]), str(tiny_caches["labels"])
    graph = tmp_path / "s1.onnx"
    assert main(["export", str(distilled), "-o", str(graph), "--steps", "1", "--calibration-cache", cache,
                 "--quantize", "dynamic", "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["parity"]["passed"] and s["parity"]["max_diff"] <= 1e-4
    onnx_out, torch_out = tmp_path / "onnx.jsonl", tmp_path / "torch.jsonl"
    assert main(["predict", str(graph), cache, "--labels", labels, "--split", "test", "--steps", "1",
                 "-o", str(onnx_out), "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps"] == 1
    assert main(["eval", str(distilled), cache, "--labels", labels, "--steps", "1", "--device", "cpu",
                 "--predictions", str(torch_out)]) == 0
    by_onnx = {r["id"]: r for r in map(json.loads, onnx_out.read_text().splitlines())}
    by_torch = [json.loads(line) for line in torch_out.read_text().splitlines()]
    assert by_torch and all(by_onnx[r["id"]]["predicted"] == r["predicted"] for r in by_torch)
    assert all(by_onnx[r["id"]]["layers"] == 1 for r in by_torch)
    capsys.readouterr()
    assert main(["predict", str(graph), cache, "--steps", "2", "-o", str(tmp_path / "x.jsonl"), "--device", "cpu"]) == 2
    assert "unrolled for one step count" in capsys.readouterr().err
    plain = tmp_path / "plain.onnx"
    assert main(["export", str(distilled), "-o", str(plain)]) == 0
    capsys.readouterr()
    assert main(["predict", str(plain), cache, "--steps", "2", "-o", str(tmp_path / "y.jsonl"), "--device", "cpu"]) == 2
    assert "not an ODE-step graph" in capsys.readouterr().err


def test_bench_path_erpack_ode_int8(distilled, tiny_caches, tmp_path):
    pytest.importorskip("onnxruntime", reason="the ONNX paths need the `onnx` extra")
    from erpack.bench import BenchConfig, run_bench

    root = tiny_caches["root"]
    cfg = BenchConfig(corpus=str(tiny_caches["labels"]), model=str(root / "tiny-bert"), layer=2,
                      caches=[str(tiny_caches["bert"])], paths=["erpack-onnx-int8", "erpack-ode-int8"],
                      ode_model=str(distilled), ode_steps=1, limit=None, split="all", batch_size=8, repeats=1,
                      warmup=0, threads=1, work=str(tmp_path / "work"))
    res = run_bench(cfg).as_dict()
    assert [p["path"] for p in res["paths"]] == ["erpack-onnx-int8", "erpack-ode-int8"]
    cfg.ode_model = None
    assert any("erpack-ode-int8 skipped" in n for n in run_bench(cfg).as_dict()["notes"])
