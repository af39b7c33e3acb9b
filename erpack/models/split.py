"""`split_model(model, k)`: a pretrained encoder cut in two at layer k.

`lower(input_ids, attention_mask)` returns the hidden states entering layer k, shape (B, T, H);
`upper(hidden_states, attention_mask)` runs layers k..L-1 (and the task head, if the model has one)
and returns the last hidden state (B, T, H) or the logits (B, C).

Both halves are views of the original model: they share its parameters (no copy), and each is the
model's own forward over a shallow copy of its module tree in which the layer list (found by
erpack/models/layers.py) is sliced. The lower view sets aside the pooler and the norms after the
last layer; in the upper view the embeddings are replaced by a pass-through, so the model itself
still builds its attention masks, rotary and relative positions and MPNet's position bias from the
hidden states. ALBERT's shared groups are cut at a virtual depth (erpack/models/shared.py).
"""

from __future__ import annotations

import copy
import inspect

import torch
from torch import nn

from erpack.models.layers import (
    Architecture,
    architecture_of,
    base_of,
    find_final_modules,
    layer_path,
    num_hidden_layers,
)
from erpack.models.shared import shared_view


class PassThroughEmbeddings(nn.Module):
    """Stands in for the embeddings in the upper stack: returns the cached hidden states unchanged.

    It keeps a plain empty tensor of the model's dtype: transformers 4.x reads a module's dtype from
    its parameters or tensor attributes to build the attention mask, and an upper stack at k = L
    without a head would otherwise have none.
    """

    def __init__(self, dtype: torch.dtype = torch.float32, hidden_size: int = 0):
        super().__init__()
        self.dtype_probe = torch.empty(0, dtype=dtype)
        self.hidden_size = hidden_size

    def _apply(self, fn, recurse=True):
        self.dtype_probe = fn(self.dtype_probe)
        return super()._apply(fn, recurse)

    def forward(self, *args, **kwargs):
        x = kwargs.get("inputs_embeds")
        if x is None:  # DistilBERT calls embeddings(input_ids, inputs_embeds, position_ids) positionally
            tensors = [a for a in (*args, *kwargs.values()) if torch.is_tensor(a)]
            x = next((a for a in tensors if a.is_floating_point()), None)
            if x is None:  # token ids only: Longformer embeds padding ids to fill its window; masked out
                ids = tensors[0]
                x = torch.zeros(*ids.shape, self.hidden_size, dtype=self.dtype_probe.dtype, device=ids.device)
        return x


class NoPooler(nn.Module):
    """Stands in for the pooler where the hidden states are wanted: no parameters, no work (it hands on
    the first token, for models that apply an activation to the pooled output unconditionally)."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states[:, 0]  # (B, H)


class EmptyEncoder(nn.Module):
    """Stands in for an encoder left with no layers (k = 0 below, k = L above): returns its input."""

    def forward(self, *args, **kwargs):
        from transformers.modeling_outputs import BaseModelOutputWithPastAndCrossAttentions as Output

        x = args[0] if args else kwargs.get("hidden_states", kwargs.get("x"))
        return Output(last_hidden_state=x, hidden_states=(x,))


def _shallow(module: nn.Module) -> nn.Module:
    """A copy of `module` that shares parameters and buffers but owns its dict of children."""
    clone = copy.copy(module)
    clone._modules = dict(module._modules)
    return clone


def _base_attr(model: nn.Module) -> str | None:
    """Attribute of a task model that holds its base encoder (None if `model` is the base)."""
    base = getattr(model, "base_model", model)
    if base is model:
        return None
    prefix = getattr(model, "base_model_prefix", "")
    if getattr(model, prefix, None) is not base:
        raise TypeError(f"cannot find the base model of {type(model).__name__} under {prefix!r}")
    return prefix


class _View:
    """Shallow copies along the paths that change, so the original model is never touched."""

    def __init__(self, root: nn.Module):
        self.root = _shallow(root)
        self.cloned = {"": self.root}

    def module(self, path: str) -> nn.Module:
        """The (shallow-copied) module at `path`, copying its parents on the way."""
        if path in self.cloned:
            return self.cloned[path]
        parent_path, _, name = path.rpartition(".")
        parent = self.module(parent_path)
        clone = self.cloned[path] = _shallow(parent._modules[name])
        parent._modules[name] = clone
        return clone

    def has(self, path: str) -> bool:
        parent_path, _, name = path.rpartition(".")
        try:
            return name in self.module(parent_path)._modules
        except KeyError:
            return False

    def set(self, path: str, module: nn.Module | None) -> None:
        parent_path, _, name = path.rpartition(".")
        self.module(parent_path)._modules[name] = module
        self.cloned.pop(path, None)


def _final_modules(model: nn.Module, arch: Architecture, list_path: str) -> tuple[str, ...]:
    return arch.final_modules if arch.final_modules is not None else find_final_modules(model, list_path)


def _hidden_size(config) -> int:
    return getattr(config, "hidden_size", None) or getattr(config, "dim", 0)


def _slice_config(view: _View, path: str, layers: range, num_layers: int) -> None:
    """Per-layer settings of the config (`layer_types`) follow the layers, for models that read them by
    the position in the loop (Ultrabert): the module at `path` gets a config copy with them sliced."""
    module = view.module(path)
    config = getattr(module, "config", None)
    per_layer = getattr(config, "layer_types", None)
    if isinstance(per_layer, list | tuple) and len(per_layer) == num_layers:
        config = copy.copy(config)
        config.layer_types = list(per_layer)[layers.start:layers.stop]
        module.config = config


def _embedding_path(base: nn.Module) -> str:
    """Path of the embeddings in the base model: `embeddings`, else the module holding the input embeddings."""
    if "embeddings" in base._modules:
        return "embeddings"
    table = base.get_input_embeddings()
    return next(name for name, m in base.named_modules() if m is table)


def _may_empty(arch: Architecture, owner_path: str) -> bool:
    """Whether the module that runs the layers is replaced by an identity when it has none (DeBERTa-v2's
    encoder cannot run an empty list; it holds nothing else that must run)."""
    return arch.empty_stack and bool(owner_path)


def _view(model: nn.Module, arch: Architecture, list_path: str, layers: range, upper: bool,
          final: bool = True) -> nn.Module:
    """Shallow copy of `model` whose layer list (at `list_path`, from the root) holds `layers` only; an
    upper view without `final` also sets aside the norms after the last layer (a segment of the stack)."""
    view = _View(model)
    prefix = _base_attr(model)

    def at(path: str) -> str:  # a path in the base model -> a path from the root
        return ".".join(p for p in (prefix, path) if p)

    owner_path, _, list_name = list_path.rpartition(".")
    if arch.shared:
        shared_view(view.module(at(arch.shared)), view.module(at(owner_path))._modules[list_name],
                    list_name, layers)
    else:
        owner = view.module(at(owner_path))
        owner._modules[list_name] = nn.ModuleList(list(owner._modules[list_name])[layers.start:layers.stop])
    if not arch.shared:
        num_layers = len(base_of(model).get_submodule(list_path))
        for path in {at(""), at(owner_path)}:
            _slice_config(view, path, layers, num_layers)
    if not len(layers) and _may_empty(arch, owner_path):  # some encoders (DeBERTa-v2) cannot run no layers
        view.set(at(owner_path), EmptyEncoder())
    if upper:
        view.set(at(_embedding_path(base_of(model))), PassThroughEmbeddings(
            next(model.parameters()).dtype, _hidden_size(model.config)))
        for path in arch.embedding_modules:
            if view.has(at(path)):
                view.set(at(path), nn.Identity())
        if layers.start and len(layers):  # the first layer ran in the lower stack
            for path in arch.first_layer_modules:
                if view.has(at(path)):
                    view.set(at(path), None)
    if not upper or not final:
        for path in _final_modules(model, arch, list_path):
            view.set(at(path), nn.Identity())
    base = view.module(at(""))
    if (not upper or not prefix) and base._modules.get("pooler") is not None:
        base._modules["pooler"] = NoPooler()  # hidden states are wanted, not the pooled output
    return view.root


def _takes(module: nn.Module, name: str) -> bool:
    return name in inspect.signature(module.forward).parameters


class LowerStack(nn.Module):
    """Embeddings and layers 0..k-1: token ids in, the hidden states entering layer k out."""

    def __init__(self, view: nn.Module, layer: int):
        super().__init__()
        self.view = view
        self.layer = layer
        self.token_types = _takes(view, "token_type_ids")  # DistilBERT, ModernBERT: no token types

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids=None) -> torch.Tensor:
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None and self.token_types else {}
        out = self.view(input_ids=input_ids, attention_mask=attention_mask, return_dict=True, **kwargs)
        return out.last_hidden_state  # (B, T, H)


class UpperStack(nn.Module):
    """Layers k..L-1 (and the task head, if any): hidden states in, last hidden state or logits out."""

    def __init__(self, view: nn.Module, layer: int, has_head: bool):
        super().__init__()
        self.view = view
        self.layer = layer
        self.has_head = has_head
        # a model that takes no inputs_embeds gets the hidden states as input_ids: its embeddings pass them on
        self.input_name = "inputs_embeds" if _takes(base_of(view), "inputs_embeds") else "input_ids"
        # a base model cut at k = L with nothing after its layers: no parameters, nothing to compute
        self.identity = not has_head and not any(True for _ in view.parameters())

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return hidden_states
        out = self.view(**{self.input_name: hidden_states}, attention_mask=attention_mask, return_dict=True)
        return out.logits if self.has_head else out.last_hidden_state  # (B, C) or (B, T, H)


def split_model(model: nn.Module, layer: int) -> tuple[LowerStack, UpperStack]:
    """Cut `model` (a transformers encoder, or one with a sequence-classification head) at `layer`.

    `layer` runs from 0 (the cache is the embedding output) to L (the cache is the last layer); for a
    parameter-shared stack (ALBERT) L is its virtual depth. The halves share the model's parameters;
    `upper` holds the head when the model has one. An architecture that cannot be split raises
    UnsupportedModelError saying why.
    """
    arch = architecture_of(model)
    path = layer_path(model)
    num_layers = depth(model)
    if not 0 <= layer <= num_layers:
        raise ValueError(f"layer must be between 0 and {num_layers} for this model, got {layer}")
    has_head = _base_attr(model) is not None
    base = base_of(model)
    lower = LowerStack(_view(base, arch, path, range(0, layer), upper=False), layer)
    upper = UpperStack(_view(model, arch, path, range(layer, num_layers), upper=True), layer, has_head)
    return lower, upper


def stack_view(model: nn.Module, layers: range, final: bool = True) -> UpperStack:
    """Layers `layers` of `model`'s encoder alone, as an UpperStack without head or pooler: hidden states
    (B, T, H) in, hidden states out; the norms after the last layer run only with `final`. Like the
    halves of `split_model`, a view sharing the model's parameters (erpack/depth/segments.py runs the
    upper stack one layer at a time with it)."""
    arch = architecture_of(model)
    num_layers = depth(model)
    if not (0 <= layers.start <= layers.stop <= num_layers):
        raise ValueError(f"layers {layers.start}..{layers.stop - 1} are not inside this model's {num_layers}")
    base = base_of(model)
    return UpperStack(_view(base, arch, layer_path(model), layers, upper=True, final=final), layers.start, False)


def depth(model: nn.Module) -> int:
    """Number of layers a split can fall between (ALBERT: its virtual depth, num_hidden_layers)."""
    arch = architecture_of(model)
    if arch.shared:
        return num_hidden_layers(model.config)
    return len(base_of(model).get_submodule(layer_path(model)))
