"""Dynamic int8 with outlier-fed MatMuls left in float (issue 6: MPNet k=6 lost 40 points)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from erpack.errors import ExportError
from erpack.export import export_task_model
from erpack.export.inputs import random_batches
from erpack.export.quantize import outlier_ratios, quantize_dynamic_graph, sensitive_nodes


def _batches(outlier: float = 1.0):
    batches = random_batches(32, [[6, 9], [12, 3, 7]], seed=3)
    for hidden, _ in batches:
        hidden[..., 5] *= outlier  # one outlier channel in the graph input
    return batches


def _float_matmuls(path) -> set[str]:
    return {n.name for n in onnx.load(str(path)).graph.node if n.op_type in ("MatMul", "Gemm")}


def test_outlier_ratio_ranks_the_nodes_fed_by_an_outlier_channel_first(exported):
    ranked = outlier_ratios(exported[0], _batches(outlier=300.0))
    names = [n for n, _ in ranked]
    assert len(names) >= 6 and all(r >= 0 for _, r in ranked)
    first = onnx.load(str(exported[0])).graph.node
    fed_by_input = {n.name for n in first if n.op_type == "MatMul" and n.input[0] == "hidden_states"}
    assert fed_by_input and set(names[: len(fed_by_input)]) == fed_by_input
    assert ranked[0][1] > 2 * ranked[-1][1]


def test_quantize_dynamic_excludes_named_nodes_and_reduces_range(exported, tmp_path):
    node = outlier_ratios(exported[0], _batches())[0][0]
    d = quantize_dynamic_graph(exported[0], tmp_path / "q.onnx", exclude=[node])
    assert d["reduce_range"] is True and d["excluded"] == [node]
    assert node in _float_matmuls(tmp_path / "q.onnx")


def test_sensitive_nodes_stops_at_the_target(exported, tmp_path):
    easy = sensitive_nodes(exported[0], tmp_path / "a.onnx", _batches(), target=0.0)
    assert easy["excluded"] == [] and len(easy["auto_exclude"]["steps"]) == 1
    # an unreachable target: nodes are left in float in ranked order, up to max_excluded of them
    hard = sensitive_nodes(exported[0], tmp_path / "b.onnx", _batches(), target=1.01, max_excluded=0.5)
    steps = hard["auto_exclude"]["steps"]
    assert [s["excluded"] for s in steps] == sorted({s["excluded"] for s in steps}) and len(steps) > 1
    assert hard["excluded"] and set(hard["excluded"]) <= _float_matmuls(tmp_path / "b.onnx")
    assert hard["excluded"] == hard["auto_exclude"]["ranked"][: len(hard["excluded"])]
    hidden, mask = _batches()[0]
    from erpack.export import create_session

    z = create_session(tmp_path / "b.onnx", "cpu").run({"hidden_states": hidden, "attention_mask": mask})[0]
    assert z.shape == (2, 2) and np.isfinite(z).all()


def test_export_int8_exclude_option(tiny, tmp_path):
    s = export_task_model(tiny["task_model"], tmp_path / "n.onnx", quantize="dynamic", calibration_cache=tiny["cache"],
                          timing_runs=1, int8_exclude="none")
    v = s.variants[0]
    assert v.details["excluded"] == [] and "auto_exclude" not in v.details
    s = export_task_model(tiny["task_model"], tmp_path / "a.onnx", quantize="dynamic", calibration_cache=tiny["cache"],
                          timing_runs=1)
    assert "auto_exclude" in s.variants[0].details
    with pytest.raises(ExportError, match="exclusion"):
        export_task_model(tiny["task_model"], tmp_path / "x.onnx", quantize="dynamic", int8_exclude="all")
