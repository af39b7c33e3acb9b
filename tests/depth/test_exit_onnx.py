"""Exit graphs in ONNX Runtime: the same prediction and exit layer as PyTorch per document, through
`erpack export` and `erpack predict`; an exit option with a graph without exits is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from erpack.cli import main
from erpack.depth.ort import ExitGraphs
from erpack.depth.runner import ExitModel
from erpack.train import TaskModel


@pytest.fixture(scope="module")
def exported(dact_model, tiny_exit):
    out = tiny_exit["root"] / "graphs" / "tm.onnx"
    assert main(["export", str(dact_model[0]), "-o", str(out), "--quantize", "dynamic", "--json"]) == 0
    return out


def _test_batch(tiny_exit):
    from erpack.store import CacheReader

    ids = [r["id"] for r in tiny_exit["rows"] if r["split"] == "test"]
    with CacheReader(tiny_exit["cache"]) as reader:
        return ids, reader.get_batch(ids)


@pytest.mark.parametrize("threshold", [None, 0.2, 1.0])
def test_onnx_exits_equal_pytorch_exit_layer_included(dact_model, tiny_exit, exported, threshold):
    ids, (hidden, mask) = _test_batch(tiny_exit)
    tm = TaskModel.load(dact_model[0])
    z_pt, l_pt = ExitModel.of(tm, threshold).run(torch.from_numpy(hidden), torch.from_numpy(mask))
    graphs = ExitGraphs(exported.with_name("tm.exits"), "cpu", threshold=threshold)
    z_ort, l_ort = graphs.run({"hidden_states": hidden, "attention_mask": mask})
    assert np.array_equal(l_ort, l_pt)
    assert np.array_equal(z_ort.argmax(1), z_pt.argmax(1))
    np.testing.assert_allclose(z_ort, z_pt, atol=1e-4)
    every = ExitGraphs(exported.with_name("tm.exits"), "cpu", early_exit=False)
    z_all, l_all = every.run({"hidden_states": hidden, "attention_mask": mask})
    assert (l_all == 3).all()
    np.testing.assert_allclose(z_all, tm.predict(torch.from_numpy(hidden), torch.from_numpy(mask)).numpy(), atol=1e-4)


def test_predict_with_exit_graphs_reports_layers_and_refuses_exit_options_without_them(
        tiny_exit, exported, dact_model, tmp_path, capsys):
    cache, labels = str(tiny_exit["cache"]), str(tiny_exit["labels"])
    for folder in ("tm.exits", "tm.exits-int8"):
        out = tmp_path / f"{folder}.jsonl"
        assert main(["predict", str(exported.with_name(folder)), cache, "--labels", labels, "--split", "test",
                     "-o", str(out), "--json"]) == 0
        rows = [json.loads(x) for x in out.read_text().splitlines()]
        assert len(rows) == 8 and all(1 <= r["layers"] <= 3 for r in rows)
    assert main(["eval", str(dact_model[0]), cache, "--labels", labels, "--predictions", str(tmp_path / "e.jsonl")]) == 0
    by_id = {r["id"]: r for r in map(json.loads, (tmp_path / "e.jsonl").read_text().splitlines())}
    fp32 = [json.loads(x) for x in (tmp_path / "tm.exits.jsonl").read_text().splitlines()]
    assert all(r["layers"] == by_id[r["id"]]["layers"] and r["predicted"] == by_id[r["id"]]["predicted"] for r in fp32)
    capsys.readouterr()
    assert main(["predict", str(exported), cache, "-o", str(tmp_path / "x.jsonl"), "--exit-threshold", "0.5"]) == 2
    assert "graph without exits" in capsys.readouterr().err
    assert main(["predict", str(exported.with_name("tm.exits")), cache, "-o", str(tmp_path / "x.jsonl"),
                 "--exit-threshold", "3"]) == 2
    assert "between 0 and 1" in capsys.readouterr().err


def test_bench_runs_the_exit_path(dact_model, tiny_exit, tmp_path):
    from erpack.bench import BenchConfig, run_bench

    cfg = BenchConfig(corpus=str(tiny_exit["labels"]), model=str(tiny_exit["model"]), caches=[str(tiny_exit["cache"])],
                      task_model=str(dact_model[0]), paths=["full-torch", "erpack-onnx-int8", "erpack-exit-int8"],
                      limit=None, split="test", batch_size=4, repeats=1, warmup=0, threads=1, work=str(tmp_path / "w"))
    res = run_bench(cfg).as_dict()
    by = {p["path"]: p for p in res["paths"]}
    assert set(by) == {"full-torch", "erpack-onnx-int8", "erpack-exit-int8"}, res["notes"]
    assert 1 <= by["erpack-exit-int8"]["mean_layers"] <= 3
    assert 0 < by["erpack-exit-int8"]["mean_layers_fraction"] <= 1


def test_int8_exit_graphs_follow_the_exclusion_rule_per_layer_and_record_it(dact_model, tiny_exit, exported, capsys):
    import onnx

    from erpack.depth.onnx import export_exit_graphs
    from erpack.export.build import exclusion_batches
    from erpack.store import CacheReader

    # without a calibration cache (the module's export): every weight MatMul int8, and so recorded
    plain = json.loads((exported.with_name("tm.exits-int8") / "exits.json").read_text())["quantization"]
    assert plain["rule"] == "none" and all(g["excluded"] == [] for g in plain["graphs"].values())
    out = tiny_exit["root"] / "graphs-cal" / "tm.onnx"
    cache = str(tiny_exit["cache"])
    assert main(["export", str(dact_model[0]), "-o", str(out), "--quantize", "dynamic", "--calibration-cache", cache,
                 "--json"]) == 0
    assert "float: layer-0.onnx" in capsys.readouterr().out
    folder = out.with_name("tm.exits-int8")
    record = json.loads((folder / "exits.json").read_text())
    q = record["quantization"]
    assert q["rule"] == "auto" and sorted(q["graphs"]) == sorted(record["files"]) == [f"layer-{j}.onnx" for j in range(3)]
    for name, g in q["graphs"].items():
        meta = {p.key: p.value for p in onnx.load(str(folder / name)).metadata_props}
        details = json.loads(meta["erpack.quantization"])
        assert details["excluded"] == g["excluded"] and details["auto_exclude"]["target"] == 0.99
        floats = {n.name for n in onnx.load(str(folder / name)).graph.node if n.op_type in ("MatMul", "Gemm")}
        assert set(g["excluded"]) <= floats
        # the rule reached its target on the calibration records, or left its most in float
        last = details["auto_exclude"]["steps"][-1]
        assert last["agreement"] >= 0.99 or last["excluded"] == details["auto_exclude"]["weights"]
    # agreement with the fp32 graphs on the test documents: the same answers (tiny model, planted signal)
    ids, (hidden, mask) = _test_batch(tiny_exit)
    feeds = {"hidden_states": hidden, "attention_mask": mask}
    z8, l8 = ExitGraphs(folder, "cpu").run(feeds)
    z32, l32 = ExitGraphs(out.with_name("tm.exits"), "cpu").run(feeds)
    assert (z8.argmax(1) == z32.argmax(1)).mean() >= 0.75 and np.abs(l8 - l32).max() <= 1
    # --int8-exclude none: recorded as such
    with CacheReader(cache) as reader:
        batches = exclusion_batches(reader)
    none = export_exit_graphs(TaskModel.load(dact_model[0]), tiny_exit["root"] / "none.exits-int8", int8=True,
                              calibration=batches, int8_exclude="none")
    assert none["quantization"]["rule"] == "none"
