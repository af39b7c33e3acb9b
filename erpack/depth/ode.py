"""ODE steps over a parameter-shared upper stack: S steps h <- h + beta * (f(h) - h) instead of L-k unit steps.

A parameter-shared upper stack (ALBERT, or a block distilled by erpack.depth.distill) is read as the
Euler discretisation of an ODE: each layer is one unit step h + (f(h) - h). With S steps of size beta
(default (L-k)/S) the stack costs S block evaluations instead of L-k; S = L-k with beta = 1 is the
plain upper stack (exactly: a unit step is f(h)). Step i of S runs the layer at virtual depth
k + floor(i (L-k) / S), so a stack whose groups change with depth (ALBERT with several groups) keeps
them in order; a fully shared stack runs its one block every step.

    upper = OdeUpper(tm.model, tm.layer, steps=3, beta=2.0)   # (hidden, mask) -> logits, 3 block evaluations
    up = ode_upper(tm, steps=3)                                # beta from the task model's record, or the default

Trained with random steps (`StepDraws`: each batch runs S steps of size (L-k)/S, S drawn from 1..L-k),
one block serves every S, not only L-k; the record then holds `"random_steps": {"seed", "draws", ...}`.

The task model's record `"ode": {"block": {...}, "steps_trained": L-k, "betas": {"S": beta}}` holds the
step size chosen on validation for each S (`choose_betas`); `ode_upper` refuses a task model without a
shared block and an S outside 1..MAX_STEP_FACTOR x (L-k) (erpack.depth.limits) (TaskModelError / InputError, exit 2).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from erpack.depth.limits import check_step_range
from erpack.errors import TaskModelError

BETA_GRID = (0.75, 1.0, 1.25)  # multiples of the default step (L-k)/S tried on validation (S < L-k)


def one_layer(model: nn.Module, layer: int) -> nn.Module:
    """Virtual layer `layer` alone on (hidden, mask) -> hidden: a view of the model's encoder
    (erpack.models.split.stack_view, as erpack.depth.segments uses it), sharing its parameters."""
    from erpack.models.split import stack_view

    return stack_view(model, range(layer, layer + 1), final=False)


def head_of(model: nn.Module) -> nn.Module:
    """(hidden after the last layer, mask) -> logits: the model's forward with no layer left (split at L)."""
    from erpack.models.split import depth, split_model

    return split_model(model, depth(model))[1]


def schedule(k: int, num_layers: int, steps: int) -> list[int]:
    """The virtual layer each of `steps` steps runs: k + floor(i (L-k) / S)."""
    n = num_layers - k
    return [k + (i * n) // steps for i in range(steps)]


def matched_steps(n: int, steps: int) -> list[tuple[int, int]]:
    """(step i of S, teacher layer j) pairs where S steps of size n/S land on a layer boundary: (i+1) n/S = j+1.
    S = n pairs every step with its layer; the last pair is always (S-1, n-1), the final state."""
    return [(i, (i + 1) * n // steps - 1) for i in range(steps) if (i + 1) * n % steps == 0]


def default_beta(n: int, steps: int) -> float:
    """The step size that covers the L-k unit steps in S: (L-k)/S."""
    return n / steps


class StepDraws:
    """Random step counts for training (`erpack train --shared-block --random-steps`): each batch draws S
    uniformly from 1..L-k with a generator seeded by `seed`, so a run draws the same S for the same batch
    every time; `counts` tallies the draws (the task model's record keeps them)."""

    def __init__(self, n: int, seed: int, salt: tuple = ()):
        self.n, self.seed = n, seed
        self.rng = np.random.default_rng([seed, n, *salt])  # salt: another stream for the same seed (distillation)
        self.counts = {str(s): 0 for s in range(1, n + 1)}

    def draw(self) -> int:
        steps = int(self.rng.integers(1, self.n + 1))
        self.counts[str(steps)] += 1
        return steps

    def record(self) -> dict:
        return {"seed": self.seed, "choices": list(range(1, self.n + 1)), "beta": "(L-k)/S", "draws": dict(self.counts)}


class OdeUpper(nn.Module):
    """(hidden (B,T,H), mask (B,T)) -> logits (B,C) in `steps` Euler steps of size `beta` (or hidden states,
    for a model without a head). `mean_layers` = `steps` block evaluations per document."""

    def __init__(self, model: nn.Module, k: int, steps: int, beta: float | None = None, tied: bool = False):
        from erpack.models.split import depth

        super().__init__()
        num_layers = depth(model)
        n = num_layers - k
        self.steps, self.k = steps, k
        self.beta = float(default_beta(n, steps) if beta is None else beta)
        # tied: the upper layers hold copies of one block (a distilled task model): every step runs layer k,
        # so an exported graph holds the block's weights once
        plan = [k] * steps if tied else schedule(k, num_layers, steps)
        views = {j: one_layer(model, j) for j in sorted(set(plan))}
        self.blocks = nn.ModuleList([views[j] for j in plan])  # views share the model's weights
        self.head = head_of(model)
        self.has_head = self.head.has_head

    @property
    def view(self) -> nn.Module:
        """The encoder view whose config the exporter switches to eager attention (erpack.export)."""
        return self.blocks[0].view

    def trajectory(self, hidden: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """The state after each step (S tensors (B,T,H))."""
        h, out = hidden, []
        for block in self.blocks:
            h = block(h, mask) if self.beta == 1.0 else h + self.beta * (block(h, mask) - h)
            out.append(h)
        return out

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.trajectory(hidden, mask)[-1], mask)


def upper_depth(tm) -> int:
    """L-k of a task model: the unit steps of its upper stack."""
    from erpack.models.split import depth

    return depth(tm.model) - tm.layer


def shared(tm) -> bool:
    """Whether the task model's upper stack shares one block (or ALBERT's groups): it has an "ode" record
    or its encoder is parameter-shared."""
    from erpack.models.layers import architecture_of

    return bool(tm.info.get("ode")) or architecture_of(tm.model).shared is not None


def check_steps(tm, steps: int) -> int:
    """`steps` if the task model can run it, else TaskModelError (no shared block) / InputError (out of range)."""
    where = tm.path or "the task model"
    if tm.input == "text":
        raise TaskModelError(f"{where}: a baseline computes from text through all its layers; --steps applies to a "
                             "task model that runs from the cache with a shared upper block")
    if not shared(tm):
        raise TaskModelError(
            f"{where}: --steps needs a parameter-shared upper stack, and this {tm.model.config.model_type} task model "
            f"has L-k = {upper_depth(tm)} distinct layers; train one with `erpack train CACHE --labels ... "
            f"--shared-block -o FOLDER` (a block distilled from the upper stack), or leave --steps out")
    return check_step_range(steps, upper_depth(tm), where)


def beta_for(tm, steps: int) -> float:
    """The step size recorded for `steps` (set on validation), else the default (L-k)/S."""
    betas = (tm.info.get("ode") or {}).get("betas") or {}
    return float(betas.get(str(steps), default_beta(upper_depth(tm), steps)))


def ode_upper(tm, steps: int | None = None, beta: float | None = None) -> OdeUpper:
    """The task model's upper stack in `steps` steps (default L-k) of its recorded (or given) size."""
    steps = upper_depth(tm) if steps is None else steps
    check_steps(tm, steps)
    tied = ((tm.info.get("ode") or {}).get("block") or {}).get("kind") == "distilled"
    return OdeUpper(tm.model, tm.layer, steps, beta_for(tm, steps) if beta is None else beta, tied=tied)


def graph_record(tm, upper: OdeUpper) -> dict:
    """What an exported S-step graph records in its metadata (erpack.depth.limits reads it)."""
    return {"steps": upper.steps, "beta": upper.beta, "steps_trained": upper_depth(tm)}


def choose_betas(model: nn.Module, k: int, accuracy, steps: list[int], grid=BETA_GRID) -> tuple[dict, dict]:
    """For each S in `steps` the beta of `grid` x (L-k)/S with the best `accuracy(upper)` (validation);
    ties go to the multiple nearest 1; S = L-k keeps beta 1 (the steps it was trained with).
    Returns ({"S": beta}, {"S": {beta: accuracy}})."""
    from erpack.models.split import depth

    n = depth(model) - k
    betas, tried = {}, {}
    for s in steps:
        scores = {}
        for m in sorted(grid, key=lambda m: abs(m - 1.0)) if s != n else (1.0,):
            beta = round(default_beta(n, s) * m, 6)
            scores[beta] = float(accuracy(OdeUpper(model, k, s, beta)))
        betas[str(s)] = max(scores, key=lambda b: scores[b])  # first max: nearest the default
        tried[str(s)] = {str(b): v for b, v in scores.items()}
    return betas, tried
