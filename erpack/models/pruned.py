"""The shapes of a pruned model: recorded in its config, rebuilt on load (erpack.prune cuts them).

The record lives in `config.erpack_pruning`, so `save_pretrained` writes it into config.json:

    {"version": 1, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536,
     "layers": [{"index": 0, "heads": [0, 1, ...], "intermediate_size": 1536}, ...],   # one per kept layer
     "dropped": [4]}

`index` and `heads` are positions in the unpruned model; `config.num_hidden_layers` is the pruned
count. `load_pruned_model(folder)` builds the unpruned architecture from the config, applies the
record's shapes, then loads the saved weights strictly (every tensor must fit), so a pruned task
model loads to the same logits.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from erpack.errors import InputError
from erpack.models.ffn import intermediate_size, prune_layer_neurons
from erpack.models.heads import original_heads, prune_layer_heads
from erpack.models.prunable import head_size, layer_list, paths_of

RECORD = "erpack_pruning"
RECORD_VERSION = 1


def pruning_record(model: nn.Module) -> dict:
    """The model's current structure as a record (an unpruned model gets the identity record)."""
    old = getattr(model.config, RECORD, None)
    paths = paths_of(model.config.model_type)
    modules = layer_list(model)
    indices = [entry["index"] for entry in old["layers"]] if old else list(range(len(modules)))
    return {
        "version": RECORD_VERSION,
        "num_hidden_layers": old["num_hidden_layers"] if old else model.config.num_hidden_layers,
        "num_attention_heads": model.config.num_attention_heads,
        "intermediate_size": model.config.intermediate_size,
        "layers": [{"index": indices[pos], "heads": original_heads(layer.get_submodule(paths.attention)),
                    "intermediate_size": intermediate_size(layer, paths)} for pos, layer in enumerate(modules)],
        "dropped": list(old["dropped"]) if old else [],
    }


def rebuild(model: nn.Module, record: dict) -> nn.Module:
    """Give an unpruned model (built from the config with the original layer count) the record's shapes."""
    if record.get("version", 0) > RECORD_VERSION:
        raise InputError(f"pruning record version {record.get('version')} is newer than this erpack reads "
                         f"({RECORD_VERSION}); upgrade erpack")
    paths = paths_of(model.config.model_type)
    size = head_size(model)
    modules = layer_list(model)
    if len(modules) != record["num_hidden_layers"]:
        raise InputError(f"pruning record expects {record['num_hidden_layers']} layers before pruning, model has "
                         f"{len(modules)}")
    kept = []
    for entry in record["layers"]:
        layer = modules[entry["index"]]
        prune_layer_heads(layer, paths, entry["heads"], size)
        prune_layer_neurons(layer, paths, range(entry["intermediate_size"]))
        kept.append(layer)
    modules._modules.clear()
    for pos, m in enumerate(kept):
        modules.add_module(str(pos), m)
    setattr(model.config, RECORD, copy.deepcopy(record))
    model.config.num_hidden_layers = len(kept)
    return model


def load_pruned_model(folder, device: str | torch.device = "cpu", config=None, auto_class=None) -> nn.Module:
    """A pruned task model saved with save_pretrained (config holds the record; pass `config` when it is
    read already): an AutoModelForSequenceClassification, or the Auto class given (`auto_class`)."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForSequenceClassification

    folder = Path(folder)
    config = config if config is not None else AutoConfig.from_pretrained(folder)
    record = getattr(config, RECORD, None)
    if record is None:
        raise InputError(f"{folder}/config.json has no {RECORD} record: load it with from_pretrained")
    full = copy.deepcopy(config)
    full.num_hidden_layers = record["num_hidden_layers"]
    delattr(full, RECORD)
    model = (auto_class or AutoModelForSequenceClassification).from_config(full)
    rebuild(model, record)
    files = sorted(folder.glob("model*.safetensors"))
    if not files:
        raise InputError(f"{folder} holds no model.safetensors")
    state = {}
    for f in files:
        state.update(load_file(str(f)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not _tied_or_buffer(model, k)]
    if missing or unexpected:
        raise InputError(f"{folder}: saved weights do not fit the pruned shapes (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}); the folder was changed after `erpack prune` wrote it")
    return model.to(device).eval()


def _tied_or_buffer(model: nn.Module, key: str) -> bool:
    """Keys save_pretrained may leave out: non-persistent or registered buffers such as position ids."""
    return key in dict(model.named_buffers())
