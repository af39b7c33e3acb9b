"""The upper stack of a task model one layer at a time: `Segments(model, k)`.

`segments.layer(j, hidden, mask)` runs upper layer k + j alone on hidden states (B, T, H) with their
mask (B, T) and returns the hidden states after it (no final norms, no pooler, no head);
`segments.head(hidden, mask)` runs what follows the last layer (the norms after it, the pooler and
the task head) and returns the logits (B, C). Running every layer then the head is the task model's
upper stack (`split_model(model, k)[1]`). Each piece is a view of the model made by
erpack.models.split (`stack_view`, `split_model` at k = L): it shares the model's parameters, so
training the model trains them, and nothing is copied.
"""

from __future__ import annotations

import torch
from torch import nn

from erpack.models.split import depth, split_model, stack_view


class Segments(nn.Module):
    """Layers k..L-1 of `model` as one view each, and the head after them (views: no parameters of their own
    beyond the model's, so save the model, not this)."""

    def __init__(self, model: nn.Module, layer: int):
        super().__init__()
        total = depth(model)
        if not 0 <= layer < total:
            raise ValueError(f"layer {layer} leaves no upper layer to run one at a time (the model has {total})")
        self.first = layer
        self.layers = nn.ModuleList([stack_view(model, range(i, i + 1), final=False) for i in range(layer, total)])
        self.final = split_model(model, total)[1]  # the norms after the last layer, the pooler and the head

    def __len__(self) -> int:
        return len(self.layers)

    def layer(self, j: int, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, T, H) after upper layer k + j."""
        return self.layers[j](hidden, mask)

    def head(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The task model's own output (logits (B, C)) on the hidden states after its last layer."""
        return self.final(hidden, mask)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Every layer then the head: the task model's upper stack."""
        for j in range(len(self.layers)):
            hidden = self.layer(j, hidden, mask)
        return self.head(hidden, mask)
