"""The training loop shared by every mode and the text baseline: epochs, validation, early stopping.

A run trains on batches that a *source* makes (decoded cache records for the recycled modes, token
ids for the baseline), through a *forward* function `inputs -> logits (B, C)` (a token task: (B, T, C)
against per-token targets padded with IGNORE, erpack.train.word_targets). Per epoch: one pass
over the training split in a seeded, length-grouped order, then an evaluation on validation; the
trainable weights of the best epoch are kept, and training stops after `patience` epochs without
improvement. Seeds: python `random`, numpy, torch (dropout, the head's init) and the shuffle order.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from erpack.train.data import Source, batch_plan
from erpack.train.metrics import classification_metrics, primary_metric, regression_metrics
from erpack.train.word_targets import WordTargets
from erpack.words import IGNORE

DEFAULT_LR = {"full": 1e-4, "upper": 1e-4, "adapter": 1e-3, "head": 1e-3}


@dataclass
class TrainConfig:
    """Hyper-parameters shared by a recycled run and its baseline (lr: per mode unless given)."""

    epochs: int = 3
    batch_size: int = 32
    lr: float | None = None  # default DEFAULT_LR[mode]
    baseline_lr: float | None = None  # default: lr when mode is upper, else DEFAULT_LR["full"]
    weight_decay: float = 0.01
    warmup: float = 0.1  # fraction of the planned steps with a linear warm-up; then linear decay to 0
    patience: int = 2  # epochs without a better validation score before stopping
    seed: int = 0
    eval_batch_size: int = 64
    max_tokens: int | None = 16384  # cap on batch size x longest document
    prefetch: int = 4  # batches decoded ahead of the model
    train_limit: int | None = None  # N training documents only, picked by a seeded hash (labels.train_subset)
    device: str = "auto"

    def lr_for(self, mode: str, recycled_mode: str | None = None) -> float:
        """Learning rate of `mode`; the baseline ("full") of an `upper` run shares its lr."""
        if mode == "full":
            if self.baseline_lr is not None:
                return self.baseline_lr
            return self.lr if self.lr is not None and recycled_mode == "upper" else DEFAULT_LR["full"]
        return self.lr if self.lr is not None else DEFAULT_LR[mode]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class RunResult:
    mode: str
    lr: float
    trainable_params: int
    total_params: int
    epochs: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_validation: dict = field(default_factory=dict)
    test: dict = field(default_factory=dict)
    stopped_early: bool = False
    device: str = "cpu"
    notes: dict = field(default_factory=dict)  # e.g. tokenize_seconds, prefetch wait, cache notes
    # (N, C) logits of the test split in example order, for paired comparisons; not serialized
    test_logits: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def train_seconds_per_epoch(self) -> float:
        secs = [e["train_seconds"] for e in self.epochs]
        return float(np.mean(secs)) if secs else float("nan")

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("test_logits")
        d["train_seconds_per_epoch"] = self.train_seconds_per_epoch
        return d


def _to(inputs, device) -> tuple:
    return tuple(x.to(device, non_blocking=True) if torch.is_tensor(x) else x for x in inputs)


def loss_fn(task: str, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if task == "regression":
        return nn.functional.mse_loss(logits.squeeze(-1).float(), y.float())
    if logits.dim() == 3:  # a token task: (B, T, C) against (B, T_max) targets, IGNORE past each document
        y = y[:, :logits.shape[1]]
        return nn.functional.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=IGNORE)
    return nn.functional.cross_entropy(logits.float(), y)


def as_targets(y) -> torch.Tensor:
    """The tensor the loss reads: a token task's per-token targets (WordTargets.tokens), else y itself."""
    return torch.as_tensor(y.tokens if isinstance(y, WordTargets) else y)


@torch.no_grad()
def predict(source: Source, forward: Callable, modules: list[nn.Module], batch_size: int, device,
            max_tokens: int | None = None) -> np.ndarray:
    """Logits for every example of a split, in example order (eval mode, sorted-length batches): (N, C),
    or (N, T, C) for per-token logits (T the longest example, zero past each one's end)."""
    for m in modules:
        m.eval()
    out: np.ndarray | None = None
    for rows, inputs in source.batches(batch_plan(source.lengths, batch_size, max_tokens=max_tokens)):
        logits = forward(_to(inputs, device)).float().cpu().numpy()  # (B, C) or (B, T, C)
        if out is None:
            out = np.zeros((len(source.lengths), *((max(source.lengths),) if logits.ndim == 3 else ()),
                            logits.shape[-1]), dtype=np.float32)
        if logits.ndim == 3:
            out[rows, :logits.shape[1]] = logits
        else:
            out[rows] = logits
    return out if out is not None else np.zeros((0, 1), dtype=np.float32)


def score(task: str, logits: np.ndarray, y, num_classes: int) -> dict:
    if isinstance(y, WordTargets):  # a token task: scored per word
        return y.score(logits)
    if task == "regression":
        return regression_metrics(y, logits[:, 0])
    return classification_metrics(y, logits.argmax(axis=1), num_classes)


def optimizer_and_schedule(params: list, lr: float, cfg: TrainConfig, steps_per_epoch: int):
    """AdamW (fused where torch has it) and a linear warm-up then linear decay over every step. `params`: tensors,
    or parameter groups (dicts with "params" and their own "lr"); the schedule scales each group's lr alike."""
    try:  # one fused kernel over all tensors (CPU and CUDA, torch >= 2.4): a full fine-tune's step is 3x faster
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, TypeError):
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    total = max(1, steps_per_epoch * cfg.epochs)
    warm = max(1, int(cfg.warmup * total))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm))))
    return optimizer, schedule


def param_groups(named: dict, lr: float, lrs: dict[str, float]) -> list[dict]:
    """Optimizer groups of the `named` parameters: one per entry of `lrs` (parameters under that child's name)
    at its lr, and the rest at `lr`; empty groups are left out."""
    groups = {child: [] for child in lrs}
    rest = []
    for name, p in named.items():
        child = name.split(".", 1)[0]
        (groups[child] if child in groups else rest).append(p)
    return [{"params": ps, "lr": g_lr} for ps, g_lr in [(rest, lr)] + [(groups[c], lrs[c]) for c in lrs] if ps]


def train_epoch(epoch: int, *, task: str, cfg: TrainConfig, modules: list[nn.Module], forward: Callable,
                train: Source, y_all: torch.Tensor, optimizer, schedule, device, progress: Callable | None,
                desc: str, train_loss: Callable | None = None) -> dict:
    """One epoch over the training batches: {epoch, train_loss, train_seconds, wait_seconds, batches}."""
    for m in modules:
        m.train()
    plan = batch_plan(train.lengths, cfg.batch_size, seed=cfg.seed, epoch=epoch, max_tokens=cfg.max_tokens)
    bar = progress(total=len(plan), desc=f"{desc} epoch {epoch + 1}/{cfg.epochs}", unit="batch") if progress else None
    wait0, t0, losses = train.wait(), time.perf_counter(), []
    for rows, inputs in train.batches(plan):
        y = y_all[rows].to(device, non_blocking=True)
        inputs = _to(inputs, device)
        loss = train_loss(inputs, y) if train_loss is not None else loss_fn(task, forward(inputs), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if bar:
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", refresh=False)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_seconds = time.perf_counter() - t0
    if bar:
        bar.close()
    return {"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else float("nan"),
            "train_seconds": train_seconds, "wait_seconds": train.wait() - wait0, "batches": len(plan)}


def fit(*, task: str, mode: str, lr: float, cfg: TrainConfig, params_of: nn.Module, modules: list[nn.Module],
        forward: Callable, train: Source, y_train: np.ndarray, validation: Source | None,
        y_validation: np.ndarray | None, num_classes: int, device, progress: Callable | None = None,
        desc: str = "train", train_loss: Callable | None = None, lrs: dict[str, float] | None = None) -> RunResult:
    """Train the parameters of `params_of` that require grad; keep the best validation epoch.
    `train_loss(inputs, y)`, when given, is the training loss in place of the task's loss on `forward`
    (early exits: erpack.depth.losses); validation still scores `forward`. `lrs`: a learning rate per child
    module of `params_of` by name (early exits: {"exits": exit lr}), each its own optimizer group; the rest
    trains at `lr`."""
    seed_everything(cfg.seed)
    named = {n: p for n, p in params_of.named_parameters() if p.requires_grad}
    params = param_groups(named, lr, lrs or {})
    result = RunResult(mode=mode, lr=lr, trainable_params=sum(p.numel() for p in named.values()),
                       total_params=sum(p.numel() for p in params_of.parameters()), device=str(device))
    steps_per_epoch = len(batch_plan(train.lengths, cfg.batch_size, seed=cfg.seed, max_tokens=cfg.max_tokens))
    optimizer, schedule = optimizer_and_schedule(params, lr, cfg, steps_per_epoch)
    y_all = as_targets(y_train)
    metric = primary_metric(task)
    best, best_state, since_best = -math.inf, None, 0
    for epoch in range(cfg.epochs):
        record = train_epoch(epoch, task=task, cfg=cfg, modules=modules, forward=forward, train=train, y_all=y_all,
                             optimizer=optimizer, schedule=schedule, device=device, progress=progress, desc=desc,
                             train_loss=train_loss)
        if validation is not None and len(validation.lengths):
            t1 = time.perf_counter()
            logits = predict(validation, forward, modules, cfg.eval_batch_size, device, cfg.max_tokens)
            record["validation"] = score(task, logits, y_validation, num_classes)
            record["eval_seconds"] = time.perf_counter() - t1
            value = record["validation"][metric]
        else:
            value = -record["train_loss"]  # no validation split: keep the epoch with the lowest loss
        result.epochs.append(record)
        if value > best or best_state is None:
            best, since_best, result.best_epoch = value, 0, epoch + 1
            best_state = {n: p.detach().clone() for n, p in named.items()}
            result.best_validation = dict(record.get("validation", {}))
        else:
            since_best += 1
            if since_best >= cfg.patience and epoch + 1 < cfg.epochs:
                result.stopped_early = True
                break
    if best_state is not None:
        with torch.no_grad():
            for n, p in named.items():
                p.copy_(best_state[n])
    for m in modules:
        m.eval()
    return result
