"""Structured pruning on tiny models: exact shapes, parity with the gated model, layer drops, save/load."""

from __future__ import annotations

import copy

import pytest
import torch

from erpack.errors import UnsupportedModelError
from erpack.models import split_model
from erpack.models.prunable import layer_list, paths_of
from erpack.prune import LayerPlan, Plan, apply_plan, load_pruned_model
from erpack.prune.gates import Gates
from tests.checkers import tiny_model

TYPES = ["bert", "roberta", "electra", "mpnet"]
K = 1  # split: layers 1..3 form the upper stack (4 heads of size 8, 64 neurons each)
PLAN = Plan((
    LayerPlan(1, (0, 2), tuple(range(0, 64, 3)), 4, 64),
    LayerPlan(2, (3,), tuple(range(10)), 4, 64),
    LayerPlan(3, (0, 1, 2, 3), (), 4, 64),
))


def _model(model_type: str):
    """A tiny model with widened weights (at init range 0.02 its logits hardly move)."""
    model = tiny_model(model_type, num_labels=2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2 and "embeddings" not in name:
                p.mul_(6.0)
    return model


def _batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(3, 7, 32, generator=g)  # (B, T, H)
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, 5:] = 0
    return hidden, mask


def _masks(plan: Plan):
    heads, neurons = {}, {}
    for p in plan.layers:
        heads[p.index] = torch.zeros(p.total_heads).index_fill_(0, torch.tensor(p.heads, dtype=torch.long), 1.0)
        neurons[p.index] = torch.zeros(p.total_neurons)
        if p.neurons:
            neurons[p.index][list(p.neurons)] = 1.0
    return heads, neurons


@torch.no_grad()
def _logits(model, hidden, mask):
    _, upper = split_model(model, K)
    return upper(hidden, mask)


@pytest.mark.parametrize("model_type", TYPES)
def test_prune_removes_exactly_the_chosen_heads_and_neurons(model_type):
    model = _model(model_type)
    paths = paths_of(model_type)
    before = [copy.deepcopy(layer) for layer in layer_list(model)]
    apply_plan(model, PLAN)
    for p in PLAN.layers:
        old, new = before[p.index], layer_list(model)[p.index]
        rows = torch.cat([torch.arange(h * 8, h * 8 + 8) for h in p.heads])
        att = new.get_submodule(paths.attention)
        assert att.num_attention_heads == len(p.heads) and att.all_head_size == 8 * len(p.heads)
        for name in (paths.q, paths.k, paths.v):
            w_new, w_old = getattr(att, name).weight, getattr(old.get_submodule(paths.attention), name).weight
            assert w_new.shape == (8 * len(p.heads), 32)
            assert torch.equal(w_new, w_old[rows])
        out = new.get_submodule(paths.out).weight
        assert out.shape == (32, 8 * len(p.heads))
        assert torch.equal(out, old.get_submodule(paths.out).weight[:, rows])
        cols = torch.tensor(p.neurons, dtype=torch.long)
        assert new.get_submodule(paths.up).weight.shape == (len(p.neurons), 32)
        assert torch.equal(new.get_submodule(paths.up).weight, old.get_submodule(paths.up).weight[cols])
        assert torch.equal(new.get_submodule(paths.up).bias, old.get_submodule(paths.up).bias[cols])
        assert new.get_submodule(paths.down).weight.shape == (32, len(p.neurons))
        assert torch.equal(new.get_submodule(paths.down).weight, old.get_submodule(paths.down).weight[:, cols])
    assert layer_list(model)[0].get_submodule(paths.attention).num_attention_heads == 4  # lower layer untouched
    assert model.config.erpack_pruning["layers"][2]["heads"] == [3]


@pytest.mark.parametrize("model_type", TYPES)
def test_pruned_output_equals_gated_output(model_type):
    model = _model(model_type)
    hidden, mask = _batch()
    heads, neurons = _masks(PLAN)
    with Gates(model, [1, 2, 3], heads, neurons, requires_grad=False):
        gated = _logits(model, hidden, mask)
    pruned = _logits(apply_plan(copy.deepcopy(model), PLAN), hidden, mask)
    diff = (pruned - gated).abs()
    print(f"{model_type}: max diff {diff.max():.2e}, mean {diff.mean():.2e}")
    assert diff.max() <= 1e-5
    assert (pruned - _logits(model, hidden, mask)).abs().max() > 1e-3  # pruning did change something


@pytest.mark.parametrize("model_type", ["bert", "mpnet"])
def test_dropped_layer_equals_model_without_it(model_type):
    model = _model(model_type)
    hidden, mask = _batch()
    reference = copy.deepcopy(model)
    layers = layer_list(reference)
    del layers[2]
    plan = Plan((LayerPlan(2, (), (), 4, 64, drop=True),))
    pruned = apply_plan(copy.deepcopy(model), plan)
    assert len(layer_list(pruned)) == 3 and pruned.config.num_hidden_layers == 3
    assert pruned.config.erpack_pruning["dropped"] == [2]
    assert (_logits(pruned, hidden, mask) - _logits(reference, hidden, mask)).abs().max() <= 1e-6


@pytest.mark.parametrize("model_type", ["bert", "mpnet"])
def test_pruned_model_saves_and_loads_to_the_same_logits(model_type, tmp_path):
    model = _model(model_type)
    hidden, mask = _batch()
    plan = Plan(PLAN.layers[:2] + (LayerPlan(3, (1,), (), 4, 64, drop=True),))
    apply_plan(model, plan)
    apply_plan(model, Plan((LayerPlan(1, (1,), (0, 5), 2, 22),)))  # pruning twice composes the record
    assert model.config.erpack_pruning["layers"][1] == {"index": 1, "heads": [2], "intermediate_size": 2}
    model.save_pretrained(tmp_path)
    loaded = load_pruned_model(tmp_path)
    for a, b in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert a[0] == b[0] and a[1].shape == b[1].shape
    assert torch.equal(_logits(model, hidden, mask), _logits(loaded, hidden, mask))


def test_unsupported_architecture_is_a_clear_error():
    model = tiny_model("distilbert", num_labels=2)
    with pytest.raises(UnsupportedModelError, match="supported: .*bert.*mpnet"):
        apply_plan(model, PLAN)
