"""`split_model(model, k)`: a pretrained encoder cut in two at layer k.

`lower(input_ids, attention_mask)` returns the hidden states entering layer k, shape (B, T, H);
`upper(hidden_states, attention_mask)` runs layers k..L-1 (and the task head, if the model has one)
and returns the last hidden state (B, T, H) or the logits (B, C).

Both halves are views of the original model: they share its parameters (no copy), and each is the
model's own forward over a shallow copy of its module tree in which the layer list is sliced. In the
upper view the embeddings are replaced by a pass-through, so the model itself still builds its
attention mask, MPNet's position bias and DeBERTa's relative positions from the hidden states.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from erpack.models.layers import Architecture, architecture_of


class PassThroughEmbeddings(nn.Module):
    """Stands in for the embeddings in the upper stack: returns the cached hidden states unchanged.

    It keeps a plain empty tensor of the model's dtype: transformers 4.x reads a module's dtype from
    its parameters or tensor attributes to build the attention mask, and an upper stack at k = L
    without a head would otherwise have none.
    """

    def __init__(self, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.dtype_probe = torch.empty(0, dtype=dtype)

    def _apply(self, fn, recurse=True):
        self.dtype_probe = fn(self.dtype_probe)
        return super()._apply(fn, recurse)

    def forward(self, *args, **kwargs):
        x = kwargs.get("inputs_embeds")
        if x is None:  # DistilBERT calls embeddings(input_ids, inputs_embeds, position_ids) positionally
            x = next(a for a in args if torch.is_tensor(a) and a.is_floating_point())
        return x


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


def _view(model: nn.Module, arch: Architecture, layers: slice, upper: bool) -> nn.Module:
    """Shallow copy of model -> base -> encoder with the layer list sliced."""
    base_attr = _base_attr(model)
    root = _shallow(model)
    base = _shallow(getattr(model, base_attr)) if base_attr else root
    if base_attr:
        root._modules[base_attr] = base
    encoder = _shallow(getattr(base, arch.encoder))
    base._modules[arch.encoder] = encoder
    kept = list(getattr(encoder, arch.layers))[layers]
    encoder._modules[arch.layers] = nn.ModuleList(kept)
    if not kept:  # some encoders (DeBERTa-v2) cannot run an empty layer list
        base._modules[arch.encoder] = encoder = EmptyEncoder()
    if upper:
        base._modules["embeddings"] = PassThroughEmbeddings(next(model.parameters()).dtype)
        for name in arch.embedding_modules:
            base._modules.pop(name, None)
        if layers.start and kept:  # the first layer ran in the lower stack
            for name in arch.first_layer_modules:
                if name in encoder._modules:
                    encoder._modules[name] = None
    if (not upper or not base_attr) and "pooler" in base._modules:
        base._modules["pooler"] = None  # hidden states are wanted, not the pooled output
    return root


def _num_layers(model: nn.Module, arch: Architecture) -> int:
    base = getattr(model, "base_model", model)
    return len(getattr(getattr(base, arch.encoder), arch.layers))


class LowerStack(nn.Module):
    """Embeddings and layers 0..k-1: token ids in, the hidden states entering layer k out."""

    def __init__(self, view: nn.Module, layer: int):
        super().__init__()
        self.view = view
        self.layer = layer

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids=None) -> torch.Tensor:
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        out = self.view(input_ids=input_ids, attention_mask=attention_mask, return_dict=True, **kwargs)
        return out.last_hidden_state  # (B, T, H)


class UpperStack(nn.Module):
    """Layers k..L-1 (and the task head, if any): hidden states in, last hidden state or logits out."""

    def __init__(self, view: nn.Module, layer: int, has_head: bool):
        super().__init__()
        self.view = view
        self.layer = layer
        self.has_head = has_head

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.view(inputs_embeds=hidden_states, attention_mask=attention_mask, return_dict=True)
        return out.logits if self.has_head else out.last_hidden_state  # (B, C) or (B, T, H)


def split_model(model: nn.Module, layer: int) -> tuple[LowerStack, UpperStack]:
    """Cut `model` (a transformers encoder, or one with a sequence-classification head) at `layer`.

    `layer` runs from 0 (the cache is the embedding output) to L (the cache is the last layer).
    The halves share the model's parameters; `upper` holds the head when the model has one.
    """
    arch = architecture_of(model.config.model_type)
    num_layers = _num_layers(model, arch)
    if not 0 <= layer <= num_layers:
        raise ValueError(f"layer must be between 0 and {num_layers} for this model, got {layer}")
    has_head = _base_attr(model) is not None
    base = getattr(model, "base_model", model)
    lower = LowerStack(_view(base, arch, slice(0, layer), upper=False), layer)
    upper = UpperStack(_view(model, arch, slice(layer, None), upper=True), layer, has_head)
    return lower, upper
