"""Parameter-shared stacks (ALBERT): a few layer groups applied over a virtual depth of L layers.

ALBERT holds `num_hidden_groups` groups and applies them `num_hidden_layers` times; virtual layer i
runs group `int(i / (L / G))`, as AlbertTransformer computes it. A split at virtual depth k gives
the lower stack virtual layers 0..k-1 and the upper stack k..L-1: each half is ALBERT's own forward
over a view whose group list is the groups of its virtual layers, in order, and whose config says
it has that many layers and groups, so ALBERT's loop picks entry i at step i.
"""

from __future__ import annotations

import copy

from torch import nn


def group_of(layer: int, num_layers: int, num_groups: int) -> int:
    """The group ALBERT applies at virtual layer `layer` (AlbertTransformer.forward's formula)."""
    return int(layer / (num_layers / num_groups))


def groups_of(config, layers: range) -> list[int]:
    """The group of each virtual layer in `layers`."""
    return [group_of(i, config.num_hidden_layers, config.num_hidden_groups) for i in layers]


def shared_view(stack: nn.Module, groups: nn.ModuleList, list_name: str, layers: range) -> None:
    """Make `stack` (a shallow copy of the module that loops over the groups) run virtual `layers` only."""
    picked = groups_of(stack.config, layers)
    stack._modules[list_name] = nn.ModuleList([groups[g] for g in picked])
    config = copy.copy(stack.config)
    config.num_hidden_layers = config.num_hidden_groups = len(picked)
    stack.config = config
