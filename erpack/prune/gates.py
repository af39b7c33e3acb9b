"""Multiplicative gates on heads and feed-forward neurons, inserted with forward pre-hooks.

A head gate scales one head's slice of the attention output projection's input (B, T, heads*d);
a neuron gate scales one column of the down projection's input (B, T, I), after the activation.
With gates of ones the model is unchanged; |dLoss/dgate| is the importance of that unit; gates of
0/1 give the masked model that structured pruning must reproduce exactly.

    with Gates(model, layers=range(3, 6)) as g:   # g.heads[i]: (heads,), g.neurons[i]: (I,)
        loss = ...; loss.backward()               # g.heads[i].grad
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from erpack.models.prunable import head_size, layer_list, paths_of


class Gates:
    """Gates of ones (trainable) or given masks on the heads and neurons of the chosen layers."""

    def __init__(self, model: nn.Module, layers: Iterable[int], heads: dict[int, torch.Tensor] | None = None,
                 neurons: dict[int, torch.Tensor] | None = None, requires_grad: bool = True):
        self.model = model
        self.paths = paths_of(model.config.model_type)
        self.size = head_size(model)
        self.layers = list(layers)
        modules = layer_list(model)
        self.heads: dict[int, torch.Tensor] = {}
        self.neurons: dict[int, torch.Tensor] = {}
        for i in self.layers:
            layer = modules[i]
            dev = layer.get_submodule(self.paths.up).weight.device
            nh = layer.get_submodule(self.paths.attention).num_attention_heads
            ni = layer.get_submodule(self.paths.up).out_features
            h = heads[i] if heads and i in heads else torch.ones(nh)
            n = neurons[i] if neurons and i in neurons else torch.ones(ni)
            self.heads[i] = h.detach().float().to(dev).requires_grad_(requires_grad)
            self.neurons[i] = n.detach().float().to(dev).requires_grad_(requires_grad)
        self._handles: list = []

    def __enter__(self) -> Gates:
        modules = layer_list(self.model)
        for i in self.layers:
            layer = modules[i]
            hg, ng, d = self.heads[i], self.neurons[i], self.size

            def gate_heads(_, args, hg=hg, d=d):
                x = args[0]  # (B, T, heads*d)
                g = hg.to(x.dtype).repeat_interleave(d)  # (heads*d,)
                return (x * g,) + tuple(args[1:])

            def gate_neurons(_, args, ng=ng):
                return (args[0] * ng.to(args[0].dtype),) + tuple(args[1:])  # (B, T, I)

            self._handles.append(layer.get_submodule(self.paths.out).register_forward_pre_hook(gate_heads))
            self._handles.append(layer.get_submodule(self.paths.down).register_forward_pre_hook(gate_neurons))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
