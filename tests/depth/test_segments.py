"""The upper stack run one layer at a time equals the upper stack run whole."""

from __future__ import annotations

import pytest
import torch

from erpack.depth.segments import Segments
from erpack.models import depth, split_model
from tests.checkers import padded_batch, tiny_model


@pytest.mark.parametrize("model_type", ["bert", "roberta", "distilbert", "mpnet", "modernbert", "albert"])
def test_segments_equal_the_upper_stack(model_type):
    model = tiny_model(model_type, num_labels=3)
    lower, upper = split_model(model, 1)
    ids, mask = padded_batch([5, 9, 3])
    with torch.no_grad():
        hidden = lower(ids, mask)
        whole = upper(hidden, mask)
        segments = Segments(model, 1)
        assert len(segments) == depth(model) - 1
        by_layer = segments(hidden, mask)
    torch.testing.assert_close(by_layer, whole, atol=1e-5, rtol=1e-5)


def test_segments_share_the_model_parameters_and_refuse_no_upper_layer():
    model = tiny_model("bert", num_labels=2)
    segments = Segments(model, 0)
    ids = {id(p) for p in model.parameters()}
    assert all(id(p) in ids for p in segments.parameters())
    with pytest.raises(ValueError, match="no upper layer"):
        Segments(model, model.config.num_hidden_layers)
