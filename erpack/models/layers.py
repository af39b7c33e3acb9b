"""Where an encoder keeps its layers: found in the model, with one table for the exceptions.

The layer list of most encoders is the one `nn.ModuleList` of `num_hidden_layers` modules inside the
base model (`encoder.layer` in BERT, `layers` in ModernBERT, `transformer.layer` in DistilBERT):
`find_layer_path` finds it, and nothing needs to be written down. The table `ARCHITECTURES` names,
per `model_type`, only what cannot be found that way (paths relative to the base model):

- `embedding_modules`: modules that act on the embeddings and must not run again in the upper stack
  (ELECTRA's `embeddings_project`, ALBERT's `encoder.embedding_hidden_mapping_in`);
- `first_layer_modules`: modules of the encoder applied after its first layer only (DeBERTa-v2's
  `encoder.conv`), which belong to the lower stack once k >= 1;
- `final_modules`: modules applied after the last layer (ModernBERT's `final_norm`, ESM's
  `encoder.emb_layer_norm_after`), which belong to the upper stack only;
- `shared`: the layers are a few groups applied over a virtual depth (ALBERT, erpack/models/shared.py).

`REFUSED` holds the architectures whose layers form a list but whose forward cannot be cut by
slicing it, each with the reason; `tests/models/test_sweep.py` keeps both tables honest against every
encoder of the installed transformers.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from erpack.errors import UnsupportedModelError


@dataclass(frozen=True)
class Architecture:
    layers: str | None = None  # path of the layer list in the base model; None: found by find_layer_path
    embedding_modules: tuple[str, ...] = ()
    first_layer_modules: tuple[str, ...] = ()
    final_modules: tuple[str, ...] | None = None  # None: found by find_final_modules
    shared: str | None = None  # path of the module looping over shared layer groups (ALBERT)
    empty_stack: bool = False  # the module running the layers cannot run none: an identity stands in


ARCHITECTURES: dict[str, Architecture] = {
    "albert": Architecture(layers="encoder.albert_layer_groups", shared="encoder",
                           embedding_modules=("encoder.embedding_hidden_mapping_in",)),
    "convbert": Architecture(embedding_modules=("embeddings_project",)),
    "deberta": Architecture(final_modules=()),  # encoder.LayerNorm normalises the relative embeddings
    "deberta-v2": Architecture(first_layer_modules=("encoder.conv",), final_modules=(), empty_stack=True),
    "electra": Architecture(embedding_modules=("embeddings_project",)),
    "rembert": Architecture(embedding_modules=("encoder.embedding_hidden_mapping_in",)),
}

GENERIC = Architecture()

# model_type -> why the split refuses it (the layers form one list, but slicing it is not enough).
REFUSED: dict[str, str] = {
    "canine": "it downsamples characters into fewer molecules before its layers and upsamples after them, so "
              "the hidden state entering layer k does not have one vector per token",
    "funnel": "it pools the sequence between blocks of layers (Funnel Transformer), so the layers do not form "
              "one list run at one length",
    "ibert": "its embeddings and layers pass (hidden state, scaling factor) pairs for integer-only inference, and "
             "a cache of hidden states does not hold the scaling factors",
    "neomme": "its layers read the token ids (value embeddings) and the embedding output besides the hidden "
              "state, which a cache of the hidden state entering layer k does not hold",
    "reformer": "its reversible layers carry two hidden streams (and chunked LSH attention), so one cached "
                "hidden state cannot resume the stack",
}


def num_hidden_layers(config) -> int | None:
    """The model's depth (`num_hidden_layers`, or `n_layers` on configs without the alias)."""
    return getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers", None)


def base_of(model: nn.Module) -> nn.Module:
    return getattr(model, "base_model", model)


def find_layer_path(model: nn.Module) -> str:
    """Dotted path, in the base model, of its one nn.ModuleList of `num_hidden_layers` modules.

    The path is remembered on the base model (not in its config), so a model whose list is then
    shortened (pruning drops layers) still finds it. Raises UnsupportedModelError saying why when
    there is no such list, or more than one.
    """
    base = base_of(model)
    known = base.__dict__.get("_erpack_layer_path")
    if known is not None:
        return known
    model_type = model.config.model_type
    depth = num_hidden_layers(model.config)
    if not depth:
        raise UnsupportedModelError(f"model_type {model_type!r}: its config gives no num_hidden_layers, so erpack "
                                    "cannot tell which modules are its layers")
    found = [name for name, m in base.named_modules() if isinstance(m, nn.ModuleList) and len(m) == depth and name]
    outer = [n for n in found if not any(n.startswith(o + ".") for o in found if o != n)]
    if len(outer) == 1:
        base.__dict__["_erpack_layer_path"] = outer[0]
        return outer[0]
    if not outer:
        raise UnsupportedModelError(
            f"model_type {model_type!r} is not supported: its base model {type(base).__name__} holds no "
            f"nn.ModuleList of its {depth} layers (num_hidden_layers), so there is no list to cut at layer k")
    raise UnsupportedModelError(
        f"model_type {model_type!r} is not supported: its base model holds {len(outer)} lists of {depth} modules "
        f"({', '.join(outer)}), so a layer is not one module and the model cannot be cut by slicing one list")


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.LayerNorm | nn.RMSNorm) or type(module).__name__.endswith("Norm")


def find_final_modules(model: nn.Module, list_path: str) -> tuple[str, ...]:
    """Normalisation modules applied after the last layer: those registered after the layer list in
    the module that holds it, or after that module in its parents up to the base model (ModernBERT's
    `final_norm`, ESM's `encoder.emb_layer_norm_after`, RoBERTa-PreLayerNorm's `LayerNorm`)."""
    base = base_of(model)
    found = []
    parts = list_path.split(".")
    for depth in range(len(parts), 0, -1):
        owner_path, child = ".".join(parts[:depth - 1]), parts[depth - 1]
        owner = base.get_submodule(owner_path)
        names = list(owner._modules)
        for name in names[names.index(child) + 1:]:
            module = owner._modules[name]
            if module is not None and _is_norm(module):
                found.append(f"{owner_path}.{name}" if owner_path else name)
    return tuple(found)


def architecture_of(model_or_type) -> Architecture:
    """The table entry for a model (or a model_type): the exception, or the generic split.

    Refused architectures raise UnsupportedModelError with the reason.
    """
    model_type = model_or_type if isinstance(model_or_type, str) else model_or_type.config.model_type
    if model_type in REFUSED:
        raise UnsupportedModelError(f"model_type {model_type!r} is not supported: {REFUSED[model_type]}")
    return ARCHITECTURES.get(model_type, GENERIC)


def layer_path(model: nn.Module) -> str:
    """Path of the layer list in the base model (a task model's or a base model's)."""
    arch = architecture_of(model)
    return arch.layers or find_layer_path(model)


def layer_list(model: nn.Module) -> nn.ModuleList:
    """The model's list of layers (ALBERT: its shared layer groups)."""
    return base_of(model).get_submodule(layer_path(model))


def layer_list_name(model: nn.Module) -> str:
    """Full module name of the layer list in `model`, e.g. `bert.encoder.layer`."""
    prefix = model.base_model_prefix if base_of(model) is not model else ""
    return ".".join(p for p in (prefix, layer_path(model)) if p)


def upper_layers(model: nn.Module, layer: int) -> list[int]:
    """Indices into `layer_list(model)` of the modules the upper stack runs from `layer` on (ALBERT: the
    groups its virtual layers layer..L-1 apply, each once)."""
    from erpack.models.shared import groups_of

    if architecture_of(model).shared:
        return sorted(set(groups_of(model.config, range(layer, num_hidden_layers(model.config)))))
    return list(range(layer, len(layer_list(model))))
