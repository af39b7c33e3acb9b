"""What to cut: pruning targets, and a plan of kept heads and neurons per upper layer.

Targets are small frozen dataclasses:
- `Fractions(heads=0.3, ffn=0.4)`: remove that share of the upper stack's heads and neurons;
- `ParamsBudget(0.6)`: the upper stack (layers k..L-1, pooler and head) keeps at most 60% of its
  parameters (one fraction p for heads and neurons, the smallest that fits);
- `LatencyBudget(0.6)`: the upper stack's measured latency is at most 60% of the unpruned one's
  (erpack.prune.budget searches p by timing pruned copies).

`make_plan(importance, fractions)` ranks units globally on their per-layer normalised scores and
removes the lowest. A layer left with no head loses the whole layer when at least `drop_ffn` of
its neurons go too (default: half); otherwise it keeps its best head (a layer needs one head).
"""

from __future__ import annotations

from dataclasses import dataclass

from erpack.errors import PruneError
from erpack.prune.importance import Importance


def _fraction(name: str, value: float, top: float = 1.0) -> None:
    if not 0.0 <= value < top:
        raise PruneError(f"{name} must be in [0, {top:g}), got {value!r}")


@dataclass(frozen=True)
class Fractions:
    heads: float = 0.0
    ffn: float = 0.0

    def __post_init__(self):
        _fraction("heads fraction", self.heads, 1.0 + 1e-9)
        _fraction("ffn fraction", self.ffn, 1.0 + 1e-9)


@dataclass(frozen=True)
class ParamsBudget:
    fraction: float  # of the unpruned upper stack's parameters

    def __post_init__(self):
        if not 0.0 < self.fraction <= 1.0:
            raise PruneError(f"params budget must be a fraction in (0, 1] of the upper stack's parameters, "
                             f"got {self.fraction!r} (e.g. --params-budget 0.6)")


@dataclass(frozen=True)
class LatencyBudget:
    fraction: float  # of the unpruned upper stack's latency
    batch_size: int = 32
    tokens: int = 64
    repeats: int = 7

    def __post_init__(self):
        if not 0.0 < self.fraction <= 1.0:
            raise PruneError(f"latency budget must be a fraction in (0, 1] of the upper stack's latency, "
                             f"got {self.fraction!r} (e.g. --latency-budget 0.6)")


@dataclass(frozen=True)
class LayerPlan:
    index: int  # position in the model's current layer list
    heads: tuple[int, ...]  # kept heads (indices into the layer's current heads)
    neurons: tuple[int, ...]  # kept feed-forward neurons
    total_heads: int
    total_neurons: int
    drop: bool = False


@dataclass(frozen=True)
class Plan:
    layers: tuple[LayerPlan, ...]

    def counts(self) -> dict:
        th = sum(p.total_heads for p in self.layers)
        tn = sum(p.total_neurons for p in self.layers)
        kh = sum(0 if p.drop else len(p.heads) for p in self.layers)
        kn = sum(0 if p.drop else len(p.neurons) for p in self.layers)
        return {"heads_kept": kh, "heads_total": th, "neurons_kept": kn, "neurons_total": tn,
                "heads_removed_fraction": 1 - kh / th if th else 0.0,
                "neurons_removed_fraction": 1 - kn / tn if tn else 0.0,
                "layers_dropped": [p.index for p in self.layers if p.drop]}

    def as_dict(self) -> dict:
        return {"layers": [{"index": p.index, "heads": list(p.heads), "intermediate_size": len(p.neurons),
                            "total_heads": p.total_heads, "total_neurons": p.total_neurons, "drop": p.drop}
                           for p in self.layers], **self.counts()}


def _cut(scores: dict[int, list[float]], fraction: float) -> dict[int, set[int]]:
    """Units to remove: the round(fraction * total) lowest scores over all layers (ties: later units)."""
    units = [(s, i, j) for i, row in scores.items() for j, s in enumerate(row)]
    n = int(round(fraction * len(units)))
    out: dict[int, set[int]] = {i: set() for i in scores}
    for _, i, j in sorted(units, key=lambda u: (u[0], -u[1], -u[2]))[:n]:
        out[i].add(j)
    return out


def make_plan(importance: Importance, target: Fractions, drop_ffn: float = 0.5) -> Plan:
    """Keep the most important heads and neurons; drop layers that lose every head and most neurons."""
    heads = {i: importance.heads[i].tolist() for i in importance.layers}
    neurons = {i: importance.neurons[i].tolist() for i in importance.layers}
    cut_h, cut_n = _cut(heads, target.heads), _cut(neurons, target.ffn)
    layers = []
    for i in importance.layers:
        nh, ni = len(heads[i]), len(neurons[i])
        keep_h = [j for j in range(nh) if j not in cut_h[i]]
        keep_n = tuple(j for j in range(ni) if j not in cut_n[i])
        drop = False
        if not keep_h:
            if ni == 0 or len(cut_n[i]) / ni >= drop_ffn:
                drop = True
            else:
                keep_h = [max(range(nh), key=lambda j: heads[i][j])]
        layers.append(LayerPlan(i, tuple(keep_h), keep_n, nh, ni, drop))
    return Plan(tuple(layers))


def upper_params(model, layer: int) -> int:
    """Parameters the upper stack runs: layers k..L-1, the pooler and the head (shared tables excluded)."""
    from erpack.models import split_model

    _, upper = split_model(model, layer)
    return sum(p.numel() for p in upper.parameters())


def plan_params(model, layer: int, plan: Plan) -> int:
    """Upper-stack parameters after `plan`, computed from shapes (nothing is pruned)."""
    from erpack.models.prunable import head_size, layer_list

    hidden, d = model.config.hidden_size, head_size(model)
    per_head = 3 * (hidden * d + d) + d * hidden  # q/k/v rows and bias, output projection columns
    per_neuron = hidden + 1 + hidden  # up row and bias, down column
    modules = layer_list(model)
    total = upper_params(model, layer)
    for p in plan.layers:
        if p.drop:
            total -= sum(x.numel() for x in modules[p.index].parameters())
        else:
            total -= (p.total_heads - len(p.heads)) * per_head + (p.total_neurons - len(p.neurons)) * per_neuron
    return total


def fraction_for_params(model, layer: int, importance: Importance, budget: ParamsBudget,
                        drop_ffn: float = 0.5) -> tuple[float, Plan]:
    """The smallest fraction p (steps of 0.01) whose plan Fractions(p, p) fits the parameter budget."""
    limit = budget.fraction * upper_params(model, layer)
    for step in range(0, 100):
        p = step / 100
        plan = make_plan(importance, Fractions(p, p), drop_ffn)
        if plan_params(model, layer, plan) <= limit:
            return p, plan
    raise PruneError(f"a params budget of {budget.fraction:g} cannot be met by pruning heads and neurons alone "
                     "(the head, pooler and layer norms remain); ask for a larger budget")
