"""Apply a plan to a model: really smaller weights, the result recorded in its config.

The record (`config.erpack_pruning`, written into config.json by `save_pretrained`) and rebuilding
its shapes on load live in erpack.models.pruned, which a task model loads through without
importing the pruning package.
"""

from __future__ import annotations

from torch import nn

from erpack.errors import PruneError
from erpack.models.ffn import prune_layer_neurons
from erpack.models.heads import prune_layer_heads
from erpack.models.prunable import head_size, layer_list, paths_of
from erpack.models.pruned import RECORD, pruning_record
from erpack.prune.plan import Plan


def apply_plan(model: nn.Module, plan: Plan) -> nn.Module:
    """Prune `model` in place as planned (heads, neurons, whole layers) and record the result in its config."""
    paths = paths_of(model.config.model_type)
    size = head_size(model)
    modules = layer_list(model)
    before = pruning_record(model)
    for p in plan.layers:
        if p.index >= len(modules):
            raise PruneError(f"plan names layer {p.index} but the model has {len(modules)} layers")
        if p.drop:
            continue
        prune_layer_heads(modules[p.index], paths, p.heads, size)
        prune_layer_neurons(modules[p.index], paths, p.neurons)
    dropped = {p.index for p in plan.layers if p.drop}
    record = pruning_record(model)
    record["dropped"] = sorted(set(before["dropped"]) | {before["layers"][i]["index"] for i in dropped})
    record["layers"] = [e for pos, e in enumerate(record["layers"]) if pos not in dropped]
    if dropped:
        kept = [m for pos, m in enumerate(modules) if pos not in dropped]
        modules._modules.clear()
        for pos, m in enumerate(kept):
            modules.add_module(str(pos), m)
    setattr(model.config, RECORD, record)
    model.config.num_hidden_layers = len(record["layers"])
    return model
