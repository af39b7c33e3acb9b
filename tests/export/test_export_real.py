"""The real MiniLM cut at k=3: the exported upper stack matches PyTorch within 1e-4 on padded batches of
real layer-3 hidden states, and its dynamic int8 variant is smaller and agrees on the argmax."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.real


def test_minilm_k3_upper_export(tmp_path):
    from erpack.export import create_session, export_upper, graph_agreement, upper_parity
    from erpack.export.inputs import pad_batch
    from erpack.export.quantize import quantize_dynamic_graph
    from erpack.models import load_model, split_model

    loaded = load_model("minilm", num_labels=2)
    lower, upper = split_model(loaded.model, 3)
    texts = ["a gripping, beautifully acted film", "dull.", "it never quite decides what it wants to be, "
             "and the result is a long two hours", "great fun"]
    hidden = []
    with torch.no_grad():
        for t in texts:
            enc = loaded.tokenizer(t, return_tensors="pt")
            hidden.append(lower(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])[0].numpy())
    batches = [pad_batch(hidden), pad_batch(hidden[1:2]), pad_batch(hidden[:2])]
    out = export_upper(upper, tmp_path / "minilm-k3.onnx", 384, {"cache": {"layer": 3, "model": loaded.identity()}})
    report = upper_parity(upper, create_session(out, "cpu"), batches)
    print(f"real MiniLM k=3 upper: {report.summary()}")
    assert report.passed and report.max_diff <= 1e-4
    q = quantize_dynamic_graph(out, tmp_path / "minilm-k3.int8.onnx")
    small = tmp_path / "minilm-k3.int8.onnx"
    assert q["method"] == "dynamic" and small.stat().st_size < out.stat().st_size / 3
    agree = graph_agreement(create_session(out, "cpu"), create_session(small, "cpu"), batches)
    print(f"int8 dynamic vs fp32: {agree}")
    assert agree["argmax_agreement"] == 1.0 and np.isfinite(agree["max_diff"])
