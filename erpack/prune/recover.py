"""Recovery after pruning: LoRA (PEFT) on the pruned upper stack, trained from the cache, merged back.

Every weight of the pruned model is frozen; LoRA goes into the linears of layers k..L-1 (all of
them by default, or q/k/v only as in the Pruning-Adapter paper) and the task head trains. The most
important layers (the top `important_share` by raw head importance) get `important_factor` times
the rank through PEFT's `rank_pattern` (alpha scales with it, so alpha/r stays 2).

With `distill`, each training target becomes soft: (1 - alpha) * one-hot(label) + alpha *
softmax(teacher_logits / T), the teacher being the unpruned task model (its logits computed once
over the training split before pruning); cross-entropy against that target is the usual
distillation loss up to a constant. Regression mixes the label and the teacher's score. The
training loop, batches and early stopping are erpack.train's (`fit`), unchanged.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from erpack.errors import InputError, PruneError
from erpack.runtime.device import resolve_device

TARGETS = ("all", "attention")


@dataclass(frozen=True)
class RecoveryConfig:
    rank: int = 8
    important_factor: int = 2  # rank multiplier on the most important layers
    important_share: float = 1 / 3  # share of the kept upper layers that count as most important
    targets: str = "all"  # "all" linears of the upper layers, or "attention" (q/k/v)
    dropout: float = 0.1
    epochs: int = 2
    lr: float = 1e-3
    distill: bool = False
    alpha: float = 0.5  # weight of the teacher in the soft target
    temperature: float = 2.0

    def __post_init__(self):
        if self.rank < 1 or self.important_factor < 1:
            raise PruneError(f"LoRA rank and its factor must be >= 1, got rank {self.rank}, factor {self.important_factor}")
        if self.targets not in TARGETS:
            raise PruneError(f"unknown LoRA targets {self.targets!r}; choose from {', '.join(TARGETS)}")
        if not 0.0 <= self.alpha <= 1.0 or self.temperature <= 0:
            raise PruneError(f"distillation needs 0 <= alpha <= 1 and temperature > 0, got {self.alpha}, {self.temperature}")

    def as_dict(self) -> dict:
        return asdict(self)


def lora_targets(model: nn.Module, layer: int, targets: str = "all") -> list[str]:
    """Names of the non-empty linears of layers k..L-1 that get LoRA."""
    from erpack.models.prunable import paths_of
    from erpack.train.modes import upper_linear_names

    names = [n for n in upper_linear_names(model, layer) if model.get_submodule(n).weight.numel()]
    if targets == "attention":
        p = paths_of(model.config.model_type)
        ends = tuple(f"{p.attention}.{x}" for x in (p.q, p.k, p.v))
        names = [n for n in names if n.endswith(ends)]
    return names


def rank_patterns(model: nn.Module, names: list[str], important: set[int], cfg: RecoveryConfig) -> tuple[dict, dict]:
    """PEFT rank_pattern / alpha_pattern giving the linears of `important` layer positions a larger rank."""
    from erpack.models.prunable import layer_list_name

    prefix = layer_list_name(model) + "."
    ranks, alphas = {}, {}
    for n in names:
        pos = int(n[len(prefix):].split(".")[0])
        if pos in important and cfg.important_factor > 1:
            key = re.escape(n)
            ranks[key] = cfg.rank * cfg.important_factor
            alphas[key] = 2 * cfg.rank * cfg.important_factor
    return ranks, alphas


def soft_targets(task: str, y: np.ndarray, teacher: np.ndarray, num_classes: int, cfg: RecoveryConfig) -> np.ndarray:
    """Distillation targets: label and teacher mixed ((N, C) probabilities, or (N,) scores for regression)."""
    if task == "regression":
        return ((1 - cfg.alpha) * y + cfg.alpha * teacher[:, 0]).astype(np.float32)
    z = teacher / cfg.temperature
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)  # (N, C)
    onehot = np.eye(num_classes, dtype=np.float32)[y]
    return ((1 - cfg.alpha) * onehot + cfg.alpha * p).astype(np.float32)


def with_lora(model: nn.Module, layer: int, important: set[int], cfg: RecoveryConfig):
    """Freeze `model`, inject LoRA (larger ranks on `important` layer positions); returns the PeftModel."""
    try:
        from peft import LoraConfig
    except ImportError:
        raise InputError("recovery needs peft: pip install 'erpack[train]' (or: pip install peft)") from None
    from erpack.train.modes import head_modules, with_peft

    names = lora_targets(model, layer, cfg.targets)
    if not names:
        raise PruneError(f"no linear layer left above layer {layer} to put LoRA in; prune less or pass --epochs 0")
    ranks, alphas = rank_patterns(model, names, important, cfg)
    model.requires_grad_(False)
    config = LoraConfig(r=cfg.rank, lora_alpha=2 * cfg.rank, lora_dropout=cfg.dropout, target_modules=names,
                        rank_pattern=ranks, alpha_pattern=alphas, bias="none")
    peft_model = with_peft(model, config)
    inner = peft_model.base_model.model
    for name in head_modules(inner):
        getattr(inner, name).requires_grad_(True)
    return peft_model, {"targets": len(names), "larger_rank_modules": len(ranks)}


def recover(model: nn.Module, layer: int, data, reader, important: set[int], cfg: RecoveryConfig,
            train_cfg=None, teacher: np.ndarray | None = None, progress=None):
    """Train LoRA on the pruned `model` from the cache; returns (merged plain model, RunResult)."""
    from erpack.models import split_model
    from erpack.train.data import cache_source
    from erpack.train.loop import TrainConfig, fit

    tcfg = train_cfg or TrainConfig(epochs=cfg.epochs, lr=cfg.lr)
    dev = resolve_device(tcfg.device)
    peft_model, info = with_lora(model, layer, important, cfg)
    inner = peft_model.base_model.model
    inner.to(dev)
    _, upper = split_model(inner, layer)
    sources = {s: cache_source(reader, [e.id for e in v], data.lengths[s], tcfg.prefetch, dev.type == "cuda")
               for s, v in data.splits.items() if s in ("train", "validation")}
    y_train = data.y["train"]
    if cfg.distill:
        if teacher is None:
            raise PruneError("distillation needs the unpruned model's logits on the training split")
        y_train = soft_targets(data.task, y_train, teacher, len(data.labels), cfg)
    torch.manual_seed(tcfg.seed)
    result = fit(task=data.task, mode="adapter", lr=tcfg.lr_for("adapter"), cfg=tcfg, params_of=inner,
                 modules=[upper], forward=lambda x: upper(*x), train=sources["train"], y_train=y_train,
                 validation=sources.get("validation"), y_validation=data.y.get("validation"),
                 num_classes=len(data.labels), device=dev, progress=progress, desc="recover")
    result.notes.update(info)
    merged = peft_model.merge_and_unload()
    merged.eval()
    return merged, result
