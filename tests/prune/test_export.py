"""A pruned upper stack exports to ONNX (erpack.export) and runs in onnxruntime with the same logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from erpack.models import split_model
from erpack.prune import LayerPlan, Plan, apply_plan
from tests.checkers import tiny_model

pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("model_type", ["bert", "mpnet"])
def test_pruned_upper_exports_to_onnx(model_type, tmp_path):
    import onnxruntime as ort

    from erpack.export import export_upper

    model = tiny_model(model_type, num_labels=2)
    apply_plan(model, Plan((LayerPlan(2, (1, 3), tuple(range(0, 64, 2)), 4, 64),
                            LayerPlan(3, (0,), (), 4, 64, drop=True))))
    _, upper = split_model(model, 2)
    path = export_upper(upper, tmp_path / "upper.onnx", 32, {"test": "pruned"})
    hidden = torch.randn(2, 6, 32)
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, 4:] = 0
    with torch.no_grad():
        want = upper(hidden, mask).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    got = sess.run(None, dict(zip(names, [hidden.numpy(), mask.numpy()])))[0]
    assert np.abs(got - want).max() <= 1e-5


def test_pruned_task_model_exports_optimized_and_int8(tiny_task, tmp_path):
    """`erpack export --optimize --quantize dynamic` of an `erpack prune` output: the fused Attention
    kernel takes one head count for the graph, so a stack whose layers kept different numbers of heads
    is optimized without it (LayerNorm still fuses) and every variant passes the parity check."""
    from erpack.export import export_task_model
    from erpack.prune import Fractions, prune_task_model

    out = tmp_path / "p"
    prune_task_model(tiny_task["task_model"], tiny_task["cache"], str(tiny_task["labels"]),
                     Fractions(heads=0.3, ffn=0.3), output=out, recovery=None, samples=8)
    s = export_task_model(out, tmp_path / "p.onnx", optimize=True, quantize="dynamic",
                          calibration_cache=tiny_task["cache"], timing_runs=1)
    optimized = s.variant("optimized").as_dict()
    assert not optimized["attention_fused"] and optimized["attention_not_fused_because"]
    assert optimized["fused"].get("SkipLayerNormalization"), optimized["fused"]
    assert optimized["parity"]["max_diff"] <= 1e-4
    assert s.variant("int8-dynamic") is not None
