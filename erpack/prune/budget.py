"""Latency of upper stacks, measured interleaved, and the pruning fraction that meets a latency budget.

Timings of several models are taken in turns (A, B, A, B, ...) after a warm-up and reported as
medians, so a neighbour's load on a shared machine hits every variant alike. A latency budget is
met by bisecting the fraction p of heads and neurons removed (the same p for both), timing each
candidate against the unpruned stack in the same interleaved rounds.
"""

from __future__ import annotations

import copy
import statistics

import torch
from torch import nn

from erpack.errors import PruneError
from erpack.prune.importance import Importance
from erpack.prune.plan import Fractions, LatencyBudget, Plan, make_plan
from erpack.runtime.timing import interleaved_times


@torch.no_grad()
def interleaved_latency(uppers: list[nn.Module], hidden: torch.Tensor, mask: torch.Tensor, repeats: int = 7,
                        warmup: int = 2) -> list[float]:
    """Median seconds of one forward pass of each upper stack on (hidden (B, T, H), mask (B, T)), in eval
    mode, timed in turns (erpack.runtime.timing)."""
    for u in uppers:
        u.eval()
    times = interleaved_times({n: (lambda u=u: u(hidden, mask)) for n, u in enumerate(uppers)}, repeats, warmup)
    return [statistics.median(times[n]) for n in range(len(uppers))]


def synthetic_batch(hidden_size: int, batch_size: int, tokens: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, tokens, hidden_size, generator=g), torch.ones(batch_size, tokens, dtype=torch.long)


def pruned_copy(model: nn.Module, plan: Plan) -> nn.Module:
    from erpack.prune.structure import apply_plan

    return apply_plan(copy.deepcopy(model), plan)


def fraction_for_latency(model: nn.Module, layer: int, importance: Importance, budget: LatencyBudget,
                         drop_ffn: float = 0.5, steps: int = 6) -> tuple[float, Plan, float]:
    """The smallest p (to 1/2**steps) with latency(Fractions(p, p)) <= budget.fraction * unpruned.

    Returns (p, plan, measured ratio). Raises PruneError when even p = 0.95 misses the budget.
    """
    from erpack.models import split_model

    hidden, mask = synthetic_batch(model.config.hidden_size, budget.batch_size, budget.tokens)
    _, base = split_model(model, layer)

    def ratio(p: float) -> tuple[float, Plan]:
        plan = make_plan(importance, Fractions(p, p), drop_ffn)
        _, upper = split_model(pruned_copy(model, plan), layer)
        t_base, t_pruned = interleaved_latency([base, upper], hidden, mask, budget.repeats)
        return t_pruned / t_base, plan

    lo, hi = 0.0, 0.95
    r_hi, plan_hi = ratio(hi)
    if r_hi > budget.fraction:
        raise PruneError(f"a latency budget of {budget.fraction:g} is not met even with 95% of heads and neurons "
                         f"removed (measured {r_hi:.2f} of the unpruned stack); ask for a larger budget")
    best = (hi, plan_hi, r_hi)
    for _ in range(steps):
        mid = (lo + hi) / 2
        r, plan = ratio(mid)
        if r <= budget.fraction:
            hi, best = mid, (mid, plan, r)
        else:
            lo = mid
    return best
