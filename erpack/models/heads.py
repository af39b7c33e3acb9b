"""Cut attention heads out of a layer's weights: q/k/v lose row blocks, the output projection column blocks.

transformers 5 no longer has `prune_heads` on BERT or MPNet, so this is the same operation done
here: new, smaller `nn.Linear`s holding slices of the old weights, and the attention module's
`num_attention_heads` / `all_head_size` set to match (the head size, and so the score scaling, is
unchanged). MPNet's encoder hands every layer a relative position bias for all heads
(B, heads, T, T); a pruned MPNet attention keeps the original indices of its heads and slices that
bias (a subclass swapped in, so it traces and exports like the original).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from erpack.errors import PruneError
from erpack.models.prunable import PrunePaths


def slice_linear(linear: nn.Linear, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> nn.Linear:
    """A new Linear with the chosen output rows and/or input columns of `linear` (bias follows rows)."""
    w = linear.weight.detach()  # (out, in)
    if rows is not None:
        w = w.index_select(0, rows.to(w.device))
    if cols is not None:
        w = w.index_select(1, cols.to(w.device))
    has_bias = linear.bias is not None
    with warnings.catch_warnings():  # a layer may keep zero neurons: torch warns on initialising (0, H)
        warnings.filterwarnings("ignore", "Initializing zero-element tensors")
        new = torch.nn.utils.skip_init(nn.Linear, w.shape[1], w.shape[0], bias=has_bias, device=w.device,
                                       dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        if has_bias:
            b = linear.bias.detach()
            new.bias.copy_(b.index_select(0, rows.to(b.device)) if rows is not None else b)
    new.weight.requires_grad_(linear.weight.requires_grad)
    if has_bias:
        new.bias.requires_grad_(linear.bias.requires_grad)
    return new


def set_module(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


def head_index(heads: Sequence[int], size: int) -> torch.Tensor:
    """Feature indices of `heads` in a (heads x size) projection: [h*size .. (h+1)*size) per head."""
    return torch.cat([torch.arange(h * size, (h + 1) * size) for h in heads]) if heads else torch.zeros(0, dtype=torch.long)


class PositionBiasSlice:
    """Mixin for an attention module whose per-head position bias must follow its pruned heads."""

    def forward(self, hidden_states, attention_mask=None, position_bias=None, *args, **kwargs):
        if position_bias is not None:
            position_bias = position_bias.index_select(1, self.kept_heads)  # (B, heads kept, T, T)
        return super().forward(hidden_states, attention_mask, position_bias, *args, **kwargs)


def _with_bias_slice(attention: nn.Module) -> None:
    """Swap `attention`'s class for one that slices the position bias (once; the class is cached)."""
    if isinstance(attention, PositionBiasSlice):
        return
    cls = type(attention)
    pruned = _PRUNED_CLASSES.get(cls)
    if pruned is None:
        pruned = _PRUNED_CLASSES[cls] = type(f"Pruned{cls.__name__}", (PositionBiasSlice, cls), {})
    attention.__class__ = pruned


_PRUNED_CLASSES: dict[type, type] = {}


def original_heads(attention: nn.Module) -> list[int]:
    """Indices, in the unpruned layer, of the heads this attention module still has."""
    kept = getattr(attention, "kept_heads", None)
    if kept is not None:
        return [int(h) for h in kept]
    original = getattr(attention, "erpack_original_heads", None)
    return list(original) if original is not None else list(range(attention.num_attention_heads))


def prune_layer_heads(layer: nn.Module, paths: PrunePaths, keep: Sequence[int], head_size: int) -> None:
    """Keep only heads `keep` (indices into the layer's current heads) of one layer, in place."""
    attention = layer.get_submodule(paths.attention)
    current = attention.num_attention_heads
    keep = sorted(set(int(h) for h in keep))
    if not keep:
        raise PruneError("a layer must keep at least one attention head; drop the whole layer instead")
    if keep[0] < 0 or keep[-1] >= current:
        raise PruneError(f"head index {keep[-1] if keep[-1] >= current else keep[0]} is out of range for a layer "
                         f"with {current} heads")
    if len(keep) == current:
        return
    was = original_heads(attention)
    index = head_index(keep, head_size)
    for name in (paths.q, paths.k, paths.v):
        setattr(attention, name, slice_linear(getattr(attention, name), rows=index))
    set_module(layer, paths.out, slice_linear(layer.get_submodule(paths.out), cols=index))
    attention.num_attention_heads = len(keep)
    attention.all_head_size = len(keep) * head_size
    originals = [was[h] for h in keep]
    if paths.position_bias:
        _with_bias_slice(attention)
        device = attention.get_submodule(paths.q).weight.device
        attention.register_buffer("kept_heads", torch.tensor(originals, dtype=torch.long, device=device),
                                  persistent=False)
    else:
        attention.erpack_original_heads = originals
