"""Cut feed-forward neurons out of a layer's weights: rows of the up projection, columns of the down one.

Neuron j of a layer is row j of `intermediate.dense` (weight and bias) and column j of
`output.dense`; removing both removes exactly that neuron's contribution, so a pruned layer computes
what the unpruned one does with the neuron's gate at 0. A layer may keep zero neurons: its
feed-forward block then adds only the down projection's bias.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from erpack.errors import PruneError
from erpack.models.heads import set_module, slice_linear
from erpack.models.prunable import PrunePaths


def prune_layer_neurons(layer: nn.Module, paths: PrunePaths, keep: Sequence[int]) -> None:
    """Keep only feed-forward neurons `keep` (indices into the layer's current neurons), in place."""
    up: nn.Linear = layer.get_submodule(paths.up)
    current = up.out_features
    keep = sorted(set(int(j) for j in keep))
    if keep and (keep[0] < 0 or keep[-1] >= current):
        raise PruneError(f"neuron index out of range for a layer with {current} feed-forward neurons")
    if len(keep) == current:
        return
    index = torch.tensor(keep, dtype=torch.long)
    set_module(layer, paths.up, slice_linear(up, rows=index))
    set_module(layer, paths.down, slice_linear(layer.get_submodule(paths.down), cols=index))


def intermediate_size(layer: nn.Module, paths: PrunePaths) -> int:
    return layer.get_submodule(paths.up).out_features
