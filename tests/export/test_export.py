"""ONNX export of tiny task models: parity across shapes, dynamic axes, metadata, variants, failure paths."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from erpack.errors import ExportError
from erpack.export import create_session, export_task_model, export_upper, read_metadata, upper_parity
from erpack.export.inputs import random_batches
from erpack.models import split_model
from erpack.train.modes import with_peft
from tests.checkers import tiny_model

SHAPES = [[1], [1, 1], [3, 17, 8], [30] * 2, [2, 9, 31, 5, 5, 1]]


def test_fp32_graph_matches_pytorch_across_shapes(exported, tiny):
    out, summary = exported
    par = summary.parity
    assert par["passed"] and par["max_diff"] <= 1e-4
    assert any(c["shape"][0] == 1 for c in par["cases"]) and any(c["padded"] for c in par["cases"])
    # shapes the export never saw: dynamic batch and token axes
    report = upper_parity(tiny["tm"].upper, create_session(out, "cpu"), random_batches(32, SHAPES, seed=5))
    print(f"tiny bert k=2 upper, unseen shapes: {report.summary()}")
    assert report.passed, report.summary()


def test_graph_inputs_have_dynamic_axes(exported):
    out, _ = exported
    g = onnx.load(str(out))
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in g.graph.input}
    assert dims["hidden_states"][:2] == ["batch", "tokens"] and dims["hidden_states"][2] == 32
    assert dims["attention_mask"] == ["batch", "tokens"]
    assert [o.name for o in g.graph.output] == ["logits"]
    assert {i.name: i.type.tensor_type.elem_type for i in g.graph.input} == {
        "hidden_states": onnx.TensorProto.FLOAT, "attention_mask": onnx.TensorProto.INT64}


def test_metadata_round_trip(exported, tiny):
    out, _ = exported
    info = read_metadata(out)
    want = tiny["tm"].expected_cache
    assert info["part"] == "upper" and info["variant"] == "fp32" and info["labels"] == ["neg", "pos"]
    assert info["cache"]["model"]["weights_sha256"] == want["model"]["weights_sha256"]
    assert info["cache"]["layer"] == 2 and info["cache"]["codec"] == want["codec"]
    assert info["cache"]["max_length"] == want["max_length"] and info["parity"]["passed"]
    flat = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert flat["erpack.weights_sha256"] == want["model"]["weights_sha256"] and flat["erpack.layer"] == "2"
    assert read_metadata(create_session(out, "cpu").session) == info  # the same through onnxruntime


def test_session_reports_providers(exported):
    s = create_session(exported[0], "auto")
    assert s.providers and s.provider in s.providers
    assert create_session(exported[0], "cpu").providers == ["CPUExecutionProvider"]


def test_quantize_dynamic_is_smaller_and_runs(tiny, tmp_path):
    s = export_task_model(tiny["task_model"], tmp_path / "q.onnx", quantize="dynamic", calibration_cache=tiny["cache"],
                          timing_runs=2)
    v = s.variants[0]
    assert v.variant == "int8-dynamic" and v.bytes < s.bytes
    assert read_metadata(v.path)["variant"] == "int8-dynamic"
    assert v.agreement["argmax_agreement"] >= 0.9 and v.agreement["max_diff"] < 0.05
    hidden, mask = random_batches(32, [[4, 7]])[0]
    assert create_session(v.path, "cpu").run({"hidden_states": hidden, "attention_mask": mask})[0].shape == (2, 2)


def test_quantize_static_needs_calibration(tiny, tmp_path):
    with pytest.raises(ExportError, match="calibration-cache"):
        export_task_model(tiny["task_model"], tmp_path / "s.onnx", quantize="static")


def test_quantize_static_and_optimize(tiny, tmp_path):
    s = export_task_model(tiny["task_model"], tmp_path / "s.onnx", quantize="static", optimize=True,
                          calibration_cache=tiny["cache"], timing_runs=2)
    opt, static = s.variants
    assert opt.variant == "optimized" and opt.parity["passed"] and opt.details["fused"]
    assert static.variant == "int8-static" and static.agreement["argmax_agreement"] >= 0.9


def test_lower_part_parity(tiny, tmp_path):
    out = tmp_path / "lower.onnx"
    s = export_task_model(tiny["task_model"], out, part="lower")
    assert s.parity["passed"]
    info = read_metadata(out)
    assert info["part"] == "lower" and info["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    # the lower graph computes what the cache holds (up to the codec: compare with fp32 PyTorch)
    tok = __import__("transformers").AutoTokenizer.from_pretrained(str(tiny["folder"]))
    enc = tok(tiny["rows"][3]["text"], return_tensors="np")
    got = create_session(out, "cpu").run({k: enc[k].astype(np.int64) for k in info["inputs"]})[0][0]
    with torch.no_grad():
        ref = tiny["tm"].lower(*(torch.from_numpy(enc[k].astype(np.int64)) for k in info["inputs"]))[0].numpy()
    assert np.abs(got - ref).max() < 1e-4


def test_failed_parity_leaves_no_file(tiny, tmp_path, monkeypatch):
    import erpack.export.build as build
    from erpack.export.parity import ParityReport

    def broken(*args, **kwargs):
        r = ParityReport(1e-4)
        r.add((2, 3), True, np.array([0.5]))
        return r

    monkeypatch.setattr(build, "upper_parity", broken)
    out = tmp_path / "bad.onnx"
    with pytest.raises(ExportError, match="differs from PyTorch by 5.000e-01"):
        export_task_model(tiny["task_model"], out)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_lora_merged_model_exports_with_parity(tmp_path):
    """A LoRA adapter (created with PEFT directly, random nonzero B) merged before export: the merged graph
    computes what the unmerged PEFT model computes."""
    peft = pytest.importorskip("peft")
    model = tiny_model("bert", num_labels=3)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value", "dense"],
                             layers_to_transform=[2, 3], modules_to_save=["classifier"])
    pm = with_peft(model, config)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    pm.eval()
    _, upper_unmerged = split_model(pm.base_model.model, 2)
    batches = random_batches(32, SHAPES, seed=2)
    with torch.no_grad():
        ref = [upper_unmerged.eval()(torch.from_numpy(h), torch.from_numpy(m)).numpy() for h, m in batches]
    from erpack.export import merge_adapters

    merged = merge_adapters(pm)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    _, upper = split_model(merged, 2)
    out = export_upper(upper, tmp_path / "lora.onnx", 32, {"cache": {"layer": 2}})
    s = create_session(out, "cpu")
    diff = max(np.abs(s.run({"hidden_states": h, "attention_mask": m})[0] - r).max() for (h, m), r in zip(batches, ref))
    print(f"LoRA-merged tiny bert k=2: max |ONNX - unmerged PEFT| {diff:.2e}")
    assert diff < 1e-4
    assert np.abs(ref[0]).max() > 0


@pytest.mark.parametrize("model_type", ["mpnet", "roberta", "distilbert", "deberta-v2"])
def test_other_architectures_parity(model_type, tmp_path):
    model = tiny_model(model_type, num_labels=2)
    _, upper = split_model(model, 2)
    out = export_upper(upper, tmp_path / f"{model_type}.onnx", 32, {"cache": {"layer": 2}})
    report = upper_parity(upper, create_session(out, "cpu"), random_batches(32, SHAPES, seed=3))
    print(f"tiny {model_type} k=2: {report.summary()}")
    assert report.passed, report.summary()


def test_existing_output_is_refused_before_any_work_unless_overwrite(tiny, tmp_path, capsys):
    from erpack.cli import main

    out = tmp_path / "m.onnx"
    variant = tmp_path / "m.optimized.onnx"
    variant.write_bytes(b"keep")
    assert main(["export", str(tiny["task_model"]), "-o", str(out), "--optimize"]) == 2
    err = capsys.readouterr().err
    assert f"{variant} exists already" in err and "--overwrite" in err
    assert not out.exists() and variant.read_bytes() == b"keep"
    dead = 2 ** 22 + 1  # above Linux's largest process id: no live process has it
    (tmp_path / f".m.onnx.partial-{dead}").write_bytes(b"half")  # what a killed export leaves
    assert main(["export", str(tiny["task_model"]), "-o", str(out)]) == 0
    first = out.read_bytes()
    assert main(["export", str(tiny["task_model"]), "-o", str(out)]) == 2
    assert "exists already" in capsys.readouterr().err and out.read_bytes() == first
    assert main(["export", str(tiny["task_model"]), "-o", str(out), "--overwrite", "--optimize"]) == 0
    assert variant.read_bytes() != b"keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.optimized.onnx"]


def test_full_part_computes_the_task_model_from_token_ids(tiny, tmp_path):
    out = tmp_path / "full.onnx"
    s = export_task_model(tiny["task_model"], out, part="full")
    assert s.parity["passed"]
    info = read_metadata(out)
    assert info["part"] == "full" and info["outputs"] == ["logits"]
    tok = __import__("transformers").AutoTokenizer.from_pretrained(str(tiny["folder"]))
    enc = tok([r["text"] for r in tiny["rows"][:3]], padding=True, return_tensors="np")
    feeds = {k: enc[k].astype(np.int64) for k in info["inputs"]}
    got = create_session(out, "cpu").run(feeds)[0]  # (B, C)
    with torch.no_grad():
        ref = tiny["tm"].model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.numpy()
    assert got.shape == (3, 2) and np.abs(got - ref).max() < 1e-4


def test_export_shows_its_steps(tiny, tmp_path):
    """A bar over the export's steps, each named as it starts, closed at the end."""
    from tests.checkers import Bars

    bars = Bars()
    export_task_model(tiny["task_model"], tmp_path / "s.onnx", quantize="dynamic", timing_runs=1, progress=bars)
    (bar,) = bars.bars
    assert bar["closed"] and bar["done"] == bar["total"] == 4
    steps = " | ".join(bar["descriptions"])
    for name in ("load the task model", "export the upper stack", "quantize (dynamic)", "time and compare int8-dynamic"):
        assert name in steps, steps


def test_regression_export_reports_pearson_not_argmax(tiny, tmp_path, capsys):
    """A regression model's one output always has the same argmax: agreement is the scores' Pearson r."""
    from erpack.cli import main
    from tests.export.conftest import make_task_model

    make_task_model(tiny["folder"], tiny["cache"], task="regression").save(tmp_path / "reg")
    out = tmp_path / "reg.onnx"
    assert main(["export", str(tmp_path / "reg"), "-o", str(out), "--quantize", "dynamic", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    a = json.loads(lines[-1])["variants"][0]["agreement"]
    assert a["argmax_agreement"] is None and 0.9 < a["pearson"] <= 1.0 and a["max_diff"] < 0.05
    line = next(x for x in lines if x.startswith("int8-dynamic"))
    assert "Pearson r" in line and "argmax" not in line


def test_the_summary_is_typed_and_its_dict_is_the_json(tiny, tmp_path, capsys):
    """export_task_model returns an ExportSummary of Variants; as_dict() is what `erpack export --json` prints,
    with the keys it always had (a variant's details at its top level)."""
    from erpack.cli import main
    from erpack.export import ExportSummary, Variant

    s = export_task_model(tiny["task_model"], tmp_path / "a.onnx", quantize="dynamic", timing_runs=1)
    assert isinstance(s, ExportSummary) and isinstance(s.variants[0], Variant) and s.variant("optimized") is None
    assert s.variant("int8-dynamic").agreement["rows"] > 0 and s.variant("int8-dynamic").details["excluded"] is not None
    out = tmp_path / "c.onnx"
    assert main(["export", str(tiny["task_model"]), "-o", str(out), "--quantize", "dynamic", "--optimize",
                 "--calibration-cache", str(tiny["cache"]), "--json"]) == 0
    d = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert list(d) == list(s.as_dict()) == ["output", "part", "layer", "model", "task", "exporter", "notes",
                                             "variants", "parity", "bytes"]
    opt, q = d["variants"]
    assert list(opt)[:4] == ["variant", "path", "bytes", "parity"] and "fused" in opt and "attention_fused" in opt
    assert list(q)[:3] == ["variant", "path", "bytes"] and "excluded" in q and "auto_exclude" in q
    assert list(opt)[-3:] == list(q)[-3:] == ["agreement", "timing", "size_ratio"]
    assert d["output"] == str(out) and d["parity"]["passed"] and d["bytes"] == out.stat().st_size
