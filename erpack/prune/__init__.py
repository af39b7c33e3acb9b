"""Pruning-adapters for recycled upper stacks: score, cut, recover (`erpack prune`, docs/pruning.md).

    from erpack.prune import Fractions, RecoveryConfig, prune_task_model
    tm, summary = prune_task_model("models/rt", "caches/rt", "rotten_tomatoes", Fractions(heads=0.4, ffn=0.4),
                                   recovery=RecoveryConfig(distill=True), output="models/rt-p40")

Modules: gates (head/neuron gates as pre-hooks), importance (|dLoss/dgate|, normalised per layer,
saved as safetensors), plan (targets and the plan of kept units), structure (apply a plan), budget
(interleaved latency, latency-budget search), recover (LoRA through PEFT, optional distillation),
task (the whole command as one call). Where heads and neurons live per model_type, cutting them and
the pruned shapes a saved model is rebuilt with are model structure: erpack.models.prunable, heads,
ffn and pruned (which TaskModel.load uses without importing this package).
"""

from erpack.models.pruned import load_pruned_model, pruning_record
from erpack.prune.importance import Importance, describe_importance, score_importance
from erpack.prune.plan import (
    Fractions,
    LatencyBudget,
    LayerPlan,
    ParamsBudget,
    Plan,
    make_plan,
    plan_params,
    upper_params,
)
from erpack.prune.recover import RecoveryConfig
from erpack.prune.structure import apply_plan

__all__ = ["Fractions", "Importance", "LatencyBudget", "LayerPlan", "ParamsBudget", "Plan", "RecoveryConfig",
           "apply_plan", "describe_importance", "load_pruned_model", "make_plan",
           "plan_params", "prune_task_model", "pruning_record", "score_importance", "upper_params"]


def __getattr__(name):
    if name == "prune_task_model":
        from erpack.prune import task

        return getattr(task, name)
    raise AttributeError(f"module 'erpack.prune' has no attribute {name!r}")
