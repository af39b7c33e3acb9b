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


@pytest.fixture(scope="module")
def unrolled(tmp_path_factory):
    """A tiny BERT's upper block unrolled over 3 ODE steps (one block's weights, used at every step)."""
    from erpack.depth.ode import OdeUpper
    from erpack.export.onnx_export import export_upper
    from tests.checkers import tiny_model

    model = tiny_model("bert", num_labels=2)
    path = tmp_path_factory.mktemp("ode") / "s3.onnx"
    export_upper(OdeUpper(model, 1, 3, beta=0.7, tied=True).eval(), path, model.config.hidden_size,
                 {"task": "classification"})
    return path


def test_a_weight_used_at_every_step_is_quantized_at_every_step(unrolled, tmp_path):
    from erpack.export import create_session
    from erpack.export.quantize import weight_sources

    sources = weight_sources(onnx.load(str(unrolled)).graph)
    linear = [n for n in sources if "/blocks." in n]
    assert len(linear) == 18 and len(set(sources[n] for n in linear)) == 6  # 3 steps x 6 MatMuls, 6 weights
    d = quantize_dynamic_graph(unrolled, tmp_path / "q.onnx")
    assert d["rewired"] == 12  # steps 2 and 3 read the weights through Identity nodes, and stayed float before
    q = onnx.load(str(tmp_path / "q.onnx")).graph
    assert not _float_matmuls(tmp_path / "q.onnx") & set(sources)  # every weight MatMul is int8 now
    assert sum(i.name.endswith("_quantized") for i in q.initializer) == len(set(sources.values()))  # once each
    assert not {i.name for i in q.initializer} & set(sources.values())  # and no float copy kept beside it
    hidden, mask = _batches()[0]
    feeds = {"hidden_states": hidden, "attention_mask": mask}
    z, ref = (create_session(p, "cpu").run(feeds)[0] for p in (tmp_path / "q.onnx", unrolled))
    assert np.abs(z - ref).max() < 0.1 * np.abs(ref).max() + 1e-3


def test_the_exclusion_rule_leaves_a_shared_weight_float_at_every_use(unrolled, tmp_path):
    from erpack.export.quantize import weight_sources

    sources = weight_sources(onnx.load(str(unrolled)).graph)
    hard = sensitive_nodes(unrolled, tmp_path / "h.onnx", _batches(), target=1.01, max_excluded=0.5)
    excluded = set(hard["excluded"])
    weights = {sources[n] for n in excluded}
    assert excluded and hard["auto_exclude"]["weights"] == len(weights)
    assert excluded == {n for n, w in sources.items() if w in weights}  # every use of an excluded weight
    floats = _float_matmuls(tmp_path / "h.onnx") & set(sources)
    assert floats == excluded
