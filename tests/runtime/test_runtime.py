"""The shared runtime: prefetcher, padding of token ids, the lower stack in PyTorch and ONNX, timing,
and the low floor (no import of erpack's higher layers, no torch where it is not needed)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from erpack.batching import pad_token_ids
from erpack.runtime.prefetch import Prefetcher
from erpack.runtime.timing import interleaved_medians, interleaved_times

HIGHER = ("erpack.train", "erpack.prune", "erpack.export", "erpack.bench", "erpack.cli", "erpack.encode",
          "erpack.predict", "erpack.demo", "erpack.report", "erpack.compress")


def test_prefetcher_raises_producer_errors_and_stops_early():
    def make(rows):
        if rows == [3]:
            raise ValueError("record 3 is broken")
        return rows

    with pytest.raises(ValueError, match="record 3"):
        list(Prefetcher([[0], [1], [2], [3]], make, depth=1))
    pf = Prefetcher([[i] for i in range(100)], lambda r: r, depth=2)
    for rows, _ in pf:
        if rows == [5]:
            break  # the producer thread is stopped and joined
    assert [rows for rows, _ in Prefetcher([[2], [0, 1]], lambda r: r)] == [[2], [0, 1]]


def test_pad_token_ids_pads_right_and_fills_token_types():
    docs = [{"input_ids": [5, 6, 7], "token_type_ids": [0, 1, 1]}, {"input_ids": [9]}]
    b = pad_token_ids(docs, pad_id=1)
    assert b["input_ids"].tolist() == [[5, 6, 7], [9, 1, 1]] and b["input_ids"].dtype == np.int64
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert b["token_type_ids"].tolist() == [[0, 1, 1], [0, 0, 0]]
    assert "token_type_ids" not in pad_token_ids(docs[1:], 0)
    assert pad_token_ids(docs[1:], 0, token_types=True)["token_type_ids"].tolist() == [[0]]


def test_interleaved_timing_runs_each_in_turns():
    calls = []
    times = interleaved_times({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, runs=3, warmup=1)
    assert calls == ["a", "b"] * 4 and [len(t) for t in times.values()] == [3, 3]
    assert set(interleaved_medians({"x": lambda: None}, runs=2, warmup=0)["x"]) == {"median_ms", "min_ms", "runs"}


def test_runtime_stands_on_a_low_floor():
    """Importing the runtime pulls in none of erpack's higher layers, and prefetch/timing not torch."""
    code = ("import sys; import erpack.runtime.device, erpack.runtime.lower, erpack.runtime.prefetch, "
            "erpack.runtime.timing, erpack.fit, erpack.batching, erpack.tokens; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith(('erpack', 'torch')))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert not [m for m in loaded if m.startswith(HIGHER)], loaded
    assert "torch" not in loaded


def test_lower_stack_in_pytorch_and_onnx_agree(tmp_path):
    """run_lower (PyTorch) and run_lower_onnx (the exported lower graph) give each document its own
    unpadded (tokens, hidden) states, in input order, equal to running it alone."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from transformers import BertConfig, BertModel

    from erpack.export.onnx_export import export_lower
    from erpack.export.session import create_session
    from erpack.models import split_model
    from erpack.runtime.lower import run_lower, run_lower_onnx, wants_token_types

    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=120, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=32, max_position_embeddings=32)).eval()
    lower, _ = split_model(model, 1)
    assert wants_token_types(lower) and wants_token_types(model.config)
    docs = [{"input_ids": [2, 7, 9, 11, 3], "token_type_ids": [0, 0, 0, 1, 1]}, {"input_ids": [2, 5, 3]},
            {"input_ids": [2, 8, 8, 3], "token_type_ids": [0, 0, 1, 1]}]
    for d in docs[1:2]:
        d["token_type_ids"] = [0] * len(d["input_ids"])
    torch_out = run_lower(lower, docs, pad_id=0, batch_size=2)
    alone = [run_lower(lower, [d], pad_id=0)[0] for d in docs]
    assert [a.shape for a in torch_out] == [(5, 16), (3, 16), (4, 16)]
    for a, b in zip(torch_out, alone):
        np.testing.assert_allclose(a, b, atol=1e-5)
    graph = export_lower(lower, tmp_path / "lower.onnx", info={})
    onnx_out = run_lower_onnx(create_session(graph, "cpu"), docs, pad_id=0, batch_size=2)
    for a, b in zip(onnx_out, torch_out):
        np.testing.assert_allclose(a, b, atol=1e-4)
