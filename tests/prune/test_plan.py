"""Plans from importance: global ranking, the layer-drop rule, parameter counts and budgets."""

from __future__ import annotations

import pytest
import torch

from erpack.errors import PruneError
from erpack.prune import Fractions, Importance, ParamsBudget, apply_plan, make_plan, plan_params, upper_params
from erpack.prune.plan import fraction_for_params
from tests.checkers import tiny_model


def _importance(heads: dict[int, list[float]], neurons: int = 8) -> Importance:
    torch.manual_seed(0)
    return Importance(list(heads), {i: torch.tensor(h) for i, h in heads.items()},
                      {i: torch.rand(neurons) for i in heads}, {i: float(sum(h)) for i, h in heads.items()})


def test_fractions_remove_the_lowest_units_globally():
    imp = _importance({1: [0.9, 0.1, 0.5, 0.4], 2: [0.2, 0.8, 0.3, 0.45]})
    plan = make_plan(imp, Fractions(heads=0.5, ffn=0.25))
    assert plan.layers[0].heads == (0, 2) and plan.layers[1].heads == (1, 3)
    c = plan.counts()
    assert c["heads_kept"] == 4 and c["neurons_kept"] == 12 and c["neurons_total"] == 16


def test_layer_losing_every_head_is_dropped_or_keeps_its_best_head():
    imp = _importance({1: [0.9, 0.8, 0.7, 0.6], 2: [0.1, 0.2, 0.05, 0.15]})
    keep = make_plan(imp, Fractions(heads=0.5, ffn=0.0))  # layer 2 loses every head but no neuron
    assert not keep.layers[1].drop and keep.layers[1].heads == (1,)
    drop = make_plan(imp, Fractions(heads=0.5, ffn=0.0), drop_ffn=0.0)
    assert drop.layers[1].drop and drop.counts()["layers_dropped"] == [2]


def test_plan_params_match_the_pruned_model_and_budget_is_met():
    model = tiny_model("bert", num_labels=2)
    imp = _importance({1: [0.9, 0.1, 0.5, 0.4], 2: [0.2, 0.8, 0.3, 0.45], 3: [0.01, 0.02, 0.03, 0.04]}, neurons=64)
    for fractions, drop_ffn in ((Fractions(0.5, 0.3), 0.5), (Fractions(0.34, 0.9), 0.5)):
        plan = make_plan(imp, fractions, drop_ffn)
        pruned = apply_plan(tiny_model("bert", num_labels=2), plan)
        assert plan_params(model, 1, plan) == upper_params(pruned, 1)
    p, plan = fraction_for_params(model, 1, imp, ParamsBudget(0.6))
    assert plan_params(model, 1, plan) <= 0.6 * upper_params(model, 1)
    assert 0 < p < 1
    with pytest.raises(PruneError, match="budget"):
        ParamsBudget(0.0)
    with pytest.raises(PruneError):
        Fractions(heads=1.5)


def test_latency_budget_search_finds_the_smallest_fraction_that_meets_it(monkeypatch):
    """The bisection, with latency modelled as the upper stack's parameter count (timing is not tested here)."""
    from erpack.prune import LatencyBudget
    from erpack.prune import budget as budget_module

    def by_params(uppers, hidden, mask, repeats=7, warmup=2):
        return [float(sum(p.numel() for p in u.parameters())) for u in uppers]

    monkeypatch.setattr(budget_module, "interleaved_latency", by_params)
    model = tiny_model("bert", num_labels=2)
    imp = _importance({1: [0.9, 0.1, 0.5, 0.4], 2: [0.2, 0.8, 0.3, 0.45], 3: [0.3, 0.6, 0.2, 0.1]}, neurons=64)
    p, plan, ratio = budget_module.fraction_for_latency(model, 1, imp, LatencyBudget(0.6, batch_size=2, tokens=4))
    assert ratio <= 0.6 and plan_params(model, 1, plan) <= 0.6 * upper_params(model, 1)
    looser = make_plan(imp, Fractions(p - 0.05, p - 0.05))
    assert plan_params(model, 1, looser) > 0.6 * upper_params(model, 1)  # within the bisection's resolution
    with pytest.raises(PruneError, match="latency budget"):
        budget_module.fraction_for_latency(model, 1, imp, LatencyBudget(0.01, batch_size=2, tokens=4))
