"""upper(lower(x)) equals the full model at every split layer, on the architectures named here; the
sweep (test_sweep.py) covers every encoder of the installed transformers."""

from __future__ import annotations

import pytest
import torch

from erpack import split_model
from erpack.errors import UnsupportedModelError
from erpack.models.layers import layer_list, layer_list_name, upper_layers
from erpack.models.shared import groups_of
from erpack.models.split import depth
from tests.checkers import max_diff_on_tokens, padded_batch, tiny_model

TOL = 1e-5
LENGTHS = [9, 3, 14, 1, 6]  # varied lengths: every batch is padded
# the table's nine, and the ones the generic split must get right: ALBERT (shared layers over a virtual
# depth), ModernBERT (global and local attention, rotary positions, a final norm), data2vec-text,
# RoBERTa-PreLayerNorm (a final norm after the encoder), ESM (rotary positions, a final norm inside it)
TESTED = ["bert", "roberta", "xlm-roberta", "camembert", "electra", "distilbert", "deberta", "deberta-v2", "mpnet",
          "albert", "modernbert", "data2vec-text", "roberta-prelayernorm", "esm"]


@pytest.mark.parametrize("model_type", TESTED)
def test_split_equals_full_model_at_every_layer(model_type):
    model = tiny_model(model_type)
    ids, mask = padded_batch(LENGTHS)
    num_layers = model.config.num_hidden_layers
    assert depth(model) == num_layers
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).last_hidden_state
        for k in range(num_layers + 1):
            lower, upper = split_model(model, k)
            hidden = lower(ids, mask)
            assert hidden.shape == (len(LENGTHS), max(LENGTHS), full.shape[-1])
            diff = max_diff_on_tokens(upper(hidden, mask), full, mask)
            assert diff <= TOL, f"{model_type} k={k}: max diff {diff:.2e}"


@pytest.mark.parametrize("model_type", TESTED)
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


@pytest.mark.parametrize("model_type", ["bert", "modernbert", "roberta-prelayernorm", "esm"])
def test_lower_output_is_the_hidden_state_entering_layer_k(model_type):
    """Below L the lower stack stops before the final norm (ModernBERT, RoBERTa-PreLayerNorm, ESM)."""
    model = tiny_model(model_type)
    ids, mask = padded_batch(LENGTHS)
    with torch.no_grad():
        states = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        for k in range(model.config.num_hidden_layers):
            lower, _ = split_model(model, k)
            assert max_diff_on_tokens(lower(ids, mask), states[k], mask) <= TOL, f"k={k}"


def test_layer_list_is_found_in_the_model():
    assert layer_list_name(tiny_model("modernbert")) == "layers"
    assert layer_list_name(tiny_model("distilbert", num_labels=2)) == "distilbert.transformer.layer"
    assert layer_list_name(tiny_model("esm", num_labels=2)) == "esm.encoder.layer"


def test_albert_splits_at_a_virtual_depth():
    """4 virtual layers over 2 groups: ALBERT applies groups 0, 0, 1, 1; the halves apply their part."""
    model = tiny_model("albert", num_labels=2)
    assert len(layer_list(model)) == 2 and depth(model) == 4
    assert groups_of(model.config, range(4)) == [0, 0, 1, 1]
    assert upper_layers(model, 1) == [0, 1] and upper_layers(model, 2) == [1] and upper_layers(model, 4) == []
    lower, upper = split_model(model, 1)
    assert len(lower.view.encoder.albert_layer_groups) == 1
    assert [id(g) for g in upper.view.albert.encoder.albert_layer_groups] == [id(layer_list(model)[g]) for g in (0, 1, 1)]
    assert model.config.num_hidden_layers == 4 and len(model.albert.encoder.albert_layer_groups) == 2  # untouched


def test_albert_with_one_shared_group():
    model = tiny_model("albert")
    model_one = type(model)(type(model.config)(**dict(model.config.to_dict(), num_hidden_groups=1))).eval()
    ids, mask = padded_batch(LENGTHS)
    with torch.no_grad():
        full = model_one(input_ids=ids, attention_mask=mask).last_hidden_state
        for k in range(5):
            lower, upper = split_model(model_one, k)
            assert max_diff_on_tokens(upper(lower(ids, mask), mask), full, mask) <= TOL


def test_halves_share_parameters_and_hold_only_their_layers():
    model = tiny_model("bert", num_labels=2)
    lower, upper = split_model(model, 1)
    model_params = {id(p) for p in model.parameters()}
    upper_params = {id(p) for p in upper.parameters()}
    lower_params = {id(p) for p in lower.parameters()}
    assert upper_params <= model_params and lower_params <= model_params
    assert not upper_params & lower_params  # no layer runs twice
    assert upper_params | lower_params == model_params
    # the original model is untouched by the split
    assert len(model.bert.encoder.layer) == 4 and model.bert.pooler is not None


def test_original_model_is_untouched():
    model = tiny_model("modernbert", num_labels=2)
    before = {n: id(m) for n, m in model.named_modules()}
    split_model(model, 2)
    assert {n: id(m) for n, m in model.named_modules()} == before
    assert getattr(model.config, "layer_types", None) == getattr(tiny_model("modernbert").config, "layer_types", None)


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


def test_layers_in_parallel_lists_are_refused_saying_why():
    with pytest.raises(UnsupportedModelError, match="4 lists of 4 modules .*attentions.*ffns"):
        split_model(tiny_model("xlm"), 1)


def test_refused_architecture_says_why():
    with pytest.raises(UnsupportedModelError, match="reformer.*reversible layers"):
        split_model(tiny_model("reformer"), 1)


def test_albert_trains_the_groups_its_upper_layers_apply():
    """Upper mode and adapters act on the shared groups the virtual layers k..L-1 apply, each once."""
    from erpack.train.modes import prepare, upper_linear_names

    model = tiny_model("albert", num_labels=2)
    names = upper_linear_names(model, 2)
    assert names and all(n.startswith("albert.encoder.albert_layer_groups.1.") for n in names)
    prepare(model, "upper", 1)
    groups = layer_list(model)
    assert all(p.requires_grad for p in groups.parameters())  # layer 1 applies group 0, layers 2-3 group 1
    prepare(model, "upper", 2)
    assert not any(p.requires_grad for p in groups[0].parameters())
    assert all(p.requires_grad for p in groups[1].parameters())
