"""Gradient importance of every head and feed-forward neuron of layers k..L-1, from a few cached batches.

The importance of a unit is |dLoss/dgate| accumulated over batches (Michel et al. 2019; the
Pruning-Adapter paper's head score), with the task loss of the task model on its own labels. Raw
scores are normalised per layer (each layer's head vector, and its neuron vector, divided by its L2
norm) so that a global ranking compares units across layers; the raw per-layer totals are kept
(`layer_scores`) to rank whole layers (recovery gives the most important ones larger LoRA ranks).

Saved beside a task model as `erpack_importance.safetensors`: tensors `heads.{i}` (heads,),
`neurons.{i}` (I,), `layer_scores` (layers,), `layers` (layers,) int64, with JSON metadata
(format, samples, model_type, cache layer, normalisation).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from erpack.errors import InputError
from erpack.prune.gates import Gates

IMPORTANCE_FILE = "erpack_importance.safetensors"
IMPORTANCE_FORMAT = "erpack-importance"


@dataclass
class Importance:
    """Per upper layer (positions in the model's layer list): normalised head and neuron scores."""

    layers: list[int]
    heads: dict[int, torch.Tensor]  # layer -> (heads,), unit L2 norm
    neurons: dict[int, torch.Tensor]  # layer -> (I,), unit L2 norm
    layer_scores: dict[int, float]  # layer -> raw head importance summed (before normalisation)
    samples: int = 0
    meta: dict = field(default_factory=dict)

    def ranked_layers(self) -> list[int]:
        """Layers from most to least important."""
        return sorted(self.layers, key=lambda i: -self.layer_scores[i])

    # ---- disk ------------------------------------------------------------------------------------
    def save(self, path) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        if path.is_dir():
            path = path / IMPORTANCE_FILE
        tensors = {"layers": torch.tensor(self.layers, dtype=torch.long),
                   "layer_scores": torch.tensor([self.layer_scores[i] for i in self.layers], dtype=torch.float32)}
        for i in self.layers:
            tensors[f"heads.{i}"] = self.heads[i].detach().float().cpu().contiguous()
            tensors[f"neurons.{i}"] = self.neurons[i].detach().float().cpu().contiguous()
        meta = dict(self.meta, format=IMPORTANCE_FORMAT, samples=self.samples, normalisation="l2 per layer",
                    score="|dLoss/dgate| summed over batches")
        save_file(tensors, str(path), metadata={"erpack": json.dumps(meta, sort_keys=True)})
        return path

    @classmethod
    def load(cls, path) -> Importance:
        from safetensors import safe_open

        path = Path(path)
        if path.is_dir():
            path = path / IMPORTANCE_FILE
        if not path.is_file():
            raise InputError(f"{path} does not exist: importance scores are written by `erpack prune`")
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("erpack", "{}"))
            if meta.get("format") != IMPORTANCE_FORMAT:
                raise InputError(f"{path} is not an erpack importance file (format {meta.get('format')!r})")
            layers = [int(i) for i in f.get_tensor("layers")]
            totals = f.get_tensor("layer_scores")
            return cls(layers, {i: f.get_tensor(f"heads.{i}") for i in layers},
                       {i: f.get_tensor(f"neurons.{i}") for i in layers},
                       {i: float(t) for i, t in zip(layers, totals)}, int(meta.get("samples", 0)), meta)


def normalise(scores: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return scores / scores.norm(p=2).clamp_min(eps)


def score_importance(model: nn.Module, layer: int, batches: Iterable, task: str = "classification") -> Importance:
    """Importance of the heads and neurons of layers `layer`..L-1 of a task model.

    `batches` yields (hidden (B, T, H), mask (B, T), y (B,)) on the model's device. The model runs
    in eval mode (no dropout) and its weights are not changed; only the gates get gradients.
    """
    from erpack.models import split_model
    from erpack.models.prunable import layer_list
    from erpack.train.loop import loss_fn

    _, upper = split_model(model, layer)
    layers = list(range(layer, len(layer_list(model))))
    was_training = model.training
    model.eval()
    heads = {i: None for i in layers}
    neurons = {i: None for i in layers}
    samples = 0
    with Gates(model, layers) as g:
        gates = [g.heads[i] for i in layers] + [g.neurons[i] for i in layers]
        for hidden, mask, y in batches:
            loss = loss_fn(task, upper(hidden, mask), y)
            grads = torch.autograd.grad(loss, gates)
            for n, i in enumerate(layers):
                h, u = grads[n].abs().cpu(), grads[len(layers) + n].abs().cpu()
                heads[i] = h if heads[i] is None else heads[i] + h
                neurons[i] = u if neurons[i] is None else neurons[i] + u
            samples += int(hidden.shape[0])
    model.train(was_training)
    if not samples:
        raise InputError("no examples to score importance on: the sample of training documents is empty")
    return Importance(layers, {i: normalise(heads[i]) for i in layers}, {i: normalise(neurons[i]) for i in layers},
                      {i: float(heads[i].sum()) for i in layers}, samples,
                      {"model_type": model.config.model_type, "cache_layer": layer})


def describe_importance(path) -> dict:
    """What `erpack inspect` shows for a task model folder: importance per layer and the pruning record.

    Returns {"path", "samples", "layers": [{"layer", "layer_score", "heads": [scores], "neurons":
    {"count", "min", "median", "max"}}], "pruning": the config's pruning record or None}, or
    {"path", "importance": None, ...} when the folder holds no importance file.
    """
    folder = Path(path)
    out: dict = {"path": str(folder), "pruning": _pruning_record(folder)}
    file = folder / IMPORTANCE_FILE if folder.is_dir() else folder
    if not file.is_file():
        return dict(out, importance=None, samples=0, layers=[])
    imp = Importance.load(file)
    rows = []
    for i in imp.layers:
        n = imp.neurons[i]
        rows.append({"layer": i, "layer_score": imp.layer_scores[i],
                     "heads": [round(float(x), 4) for x in imp.heads[i]],
                     "neurons": {"count": int(n.numel()), "min": float(n.min()) if n.numel() else None,
                                 "median": float(n.median()) if n.numel() else None,
                                 "max": float(n.max()) if n.numel() else None}})
    return dict(out, importance=str(file), samples=imp.samples, normalisation=imp.meta.get("normalisation"),
                layers=rows)


def _pruning_record(folder: Path) -> dict | None:
    config = folder / "config.json" if folder.is_dir() else folder.parent / "config.json"
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text()).get("erpack_pruning")
    except json.JSONDecodeError:
        return None
