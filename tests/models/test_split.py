"""upper(lower(x)) equals the full model, for every supported architecture and every split layer."""

from __future__ import annotations

import pytest
import torch

from erpack import split_model
from erpack.errors import UnsupportedModelError
from erpack.models import ARCHITECTURES
from tests.checkers import TINY_CONFIGS, max_diff_on_tokens, padded_batch, tiny_model

TOL = 1e-5
LENGTHS = [9, 3, 14, 1, 6]  # varied lengths: every batch is padded


def test_every_architecture_has_a_tiny_config():
    assert set(TINY_CONFIGS) == set(ARCHITECTURES)


@pytest.mark.parametrize("model_type", sorted(ARCHITECTURES))
def test_split_equals_full_model_at_every_layer(model_type):
    model = tiny_model(model_type)
    ids, mask = padded_batch(LENGTHS)
    num_layers = model.config.num_hidden_layers
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).last_hidden_state
        for k in range(num_layers + 1):
            lower, upper = split_model(model, k)
            hidden = lower(ids, mask)
            assert hidden.shape == (len(LENGTHS), max(LENGTHS), full.shape[-1])
            diff = max_diff_on_tokens(upper(hidden, mask), full, mask)
            assert diff <= TOL, f"{model_type} k={k}: max diff {diff:.2e}"


@pytest.mark.parametrize("model_type", sorted(ARCHITECTURES))
def test_split_with_classification_head(model_type):
    model = tiny_model(model_type, num_labels=3)
    ids, mask = padded_batch(LENGTHS, seed=1)
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits
        for k in (0, 2, model.config.num_hidden_layers):
            lower, upper = split_model(model, k)
            logits = upper(lower(ids, mask), mask)
            assert logits.shape == (len(LENGTHS), 3)
            assert (logits - full).abs().max().item() <= TOL


def test_lower_output_is_the_hidden_state_entering_layer_k():
    model = tiny_model("bert")
    ids, mask = padded_batch(LENGTHS)
    with torch.no_grad():
        states = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        for k in range(model.config.num_hidden_layers + 1):
            lower, _ = split_model(model, k)
            assert max_diff_on_tokens(lower(ids, mask), states[k], mask) <= TOL


def test_halves_share_parameters_and_hold_only_their_layers():
    model = tiny_model("bert", num_labels=2)
    lower, upper = split_model(model, 1)
    model_params = {id(p) for p in model.parameters()}
    upper_params = {id(p) for p in upper.parameters()}
    lower_params = {id(p) for p in lower.parameters()}
    assert upper_params <= model_params and lower_params <= model_params
    assert not upper_params & lower_params  # no layer runs twice
    assert upper_params | lower_params == model_params - {id(p) for p in model.bert.pooler.parameters()} | {
        id(p) for p in model.bert.pooler.parameters()
    }
    # the original model is untouched by the split
    assert len(model.bert.encoder.layer) == 4 and model.bert.pooler is not None


def test_upper_is_trainable_through_the_shared_parameters():
    model = tiny_model("mpnet", num_labels=2)
    ids, mask = padded_batch(LENGTHS)
    lower, upper = split_model(model, 2)
    with torch.no_grad():
        hidden = lower(ids, mask)
    upper.train()
    upper(hidden, mask).sum().backward()
    assert model.mpnet.encoder.layer[3].attention.attn.q.weight.grad is not None
    assert model.mpnet.encoder.layer[0].attention.attn.q.weight.grad is None


def test_layer_out_of_range_is_refused():
    model = tiny_model("bert")
    with pytest.raises(ValueError, match="between 0 and 4"):
        split_model(model, 5)
    with pytest.raises(ValueError):
        split_model(model, -1)


def test_unsupported_architecture_names_the_supported_ones():
    from transformers import AutoConfig, AutoModel

    model = AutoModel.from_config(AutoConfig.for_model("albert", hidden_size=32, num_hidden_layers=2,
                                                       num_attention_heads=4, intermediate_size=64,
                                                       embedding_size=16, vocab_size=50))
    with pytest.raises(UnsupportedModelError, match="supported: .*bert.*mpnet"):
        split_model(model, 1)
