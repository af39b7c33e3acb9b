"""Shared-block distillation from the cache: one block learns to reproduce an encoder's upper stack.

    tm, result = run_shared_block(reader, data, cfg, ShareSpec(distill_epochs=2, init="mean"))

1. The block: a copy of layer k, its weights the mean of layers k..L-1's (`init="mean"`) or layer k's
   own (`init="layer"`); it replaces every upper layer of the model (one module, L-k entries).
2. Distillation (`distill_epochs`): on the cached training documents, the block run L-k unit steps
   learns the pretrained upper stack's trajectory: the mean squared error to the teacher's state after
   each of its layers, plus the final state's again (padding excluded). No label is used.
3. Fine-tuning: the block and the head train for the task (erpack.train.loop.fit, `upper` mode's
   learning rate), running L-k unit steps.
4. Step sizes: for every S in 1..L-k-1 the beta of (0.75, 1, 1.25) x (L-k)/S with the best score on
   `beta_docs` validation documents spread evenly over the split (erpack.depth.ode); L-k steps keep beta 1.

ALBERT is parameter-shared already: step 1 and 2 are skipped and its groups are the block. The saved
folder is an ordinary task model (each upper layer holds a copy of the block, so it runs everywhere
an `upper` task model runs, as L-k unit steps) with the record `"ode"`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from erpack.errors import InputError

INITS = ("mean", "layer")


@dataclass(frozen=True)
class ShareSpec:
    """How the shared block is made: distillation epochs and the block's initial weights."""

    distill_epochs: int = 2
    init: str = "mean"
    distill_lr: float = 2e-4
    beta_docs: int | None = 512  # validation documents the step sizes are chosen on (None: all)

    def __post_init__(self):
        if self.init not in INITS:
            raise InputError(f"--block-init {self.init!r}: one of {', '.join(INITS)}")
        if self.distill_epochs < 0:
            raise InputError(f"--distill-epochs {self.distill_epochs}: must be 0 or more")


def tie_block(model: nn.Module, k: int, init: str = "mean") -> nn.Module:
    """Replace layers k..L-1 of `model` (in place) by one block initialised from them; returns the block."""
    from erpack.models.layers import layer_list

    layers = layer_list(model)
    if k >= len(layers):
        raise InputError(f"layer {k} leaves no upper layer to share; use a smaller layer")
    block = copy.deepcopy(layers[k])
    if init == "mean":
        states = [layers[j].state_dict() for j in range(k, len(layers))]
        block.load_state_dict({name: torch.stack([s[name].float() for s in states]).mean(0).to(states[0][name].dtype)
                               for name in states[0]})
    for j in range(k, len(layers)):
        layers[j] = block
    return block


def untie(model: nn.Module, k: int) -> None:
    """Give each upper layer its own copy of the block (transformers saves no tensor twice)."""
    from erpack.models.layers import layer_list

    layers = layer_list(model)
    for j in range(k + 1, len(layers)):
        layers[j] = copy.deepcopy(layers[k])


def _masked_mse(a: torch.Tensor, b: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    return ((a - b)[keep] ** 2).mean()


def distill(teacher: nn.Module, student: nn.Module, k: int, train, cfg, spec: ShareSpec, device,
            progress: Callable | None = None) -> list[dict]:
    """Train the student's shared block on the teacher's upper-stack trajectory; one record per epoch."""
    from erpack.depth.ode import OdeUpper
    from erpack.models.layers import layer_list
    from erpack.models.split import depth
    from erpack.train.data import batch_plan
    from erpack.train.loop import optimizer_and_schedule, seed_everything

    seed_everything(cfg.seed)
    n = depth(teacher) - k
    teach, learn = OdeUpper(teacher, k, n, 1.0).eval(), OdeUpper(student, k, n, 1.0).eval()
    block = layer_list(student)[k].requires_grad_(True)
    params = list(block.parameters())
    steps = len(batch_plan(train.lengths, cfg.batch_size, seed=cfg.seed, max_tokens=cfg.max_tokens))
    opt, sched = optimizer_and_schedule(params, spec.distill_lr, _with_epochs(cfg, spec.distill_epochs), steps)
    records = []
    for epoch in range(spec.distill_epochs):
        plan = batch_plan(train.lengths, cfg.batch_size, seed=cfg.seed, epoch=epoch, max_tokens=cfg.max_tokens)
        bar = progress(total=len(plan), desc=f"distill epoch {epoch + 1}/{spec.distill_epochs}", unit="batch") \
            if progress else None
        t0, losses, finals = time.perf_counter(), [], []
        for _, (hidden, mask) in train.batches(plan):
            hidden, mask = hidden.to(device), mask.to(device)
            keep = mask.bool()
            with torch.no_grad():
                want = teach.trajectory(hidden, mask)
            got = learn.trajectory(hidden, mask)
            per_step = [_masked_mse(g, w, keep) for g, w in zip(got, want)]
            loss = torch.stack(per_step).mean() + per_step[-1]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            finals.append(per_step[-1].item())
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", refresh=False)
        if bar:
            bar.close()
        records.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "final_mse": float(np.mean(finals)),
                        "seconds": time.perf_counter() - t0})
    return records


def _with_epochs(cfg, epochs: int):
    import dataclasses

    return dataclasses.replace(cfg, epochs=max(1, epochs))


def run_shared_block(reader, data, cfg=None, spec: ShareSpec | None = None, model_override: str | None = None,
                     progress: Callable | None = None, grid=None):
    """Distil a shared block from the cache, tune it with the head, set the step sizes on validation.

    Returns (TaskModel with the record "ode", RunResult of the fine-tuning with the test score at L-k steps)."""
    from erpack.depth.ode import BETA_GRID, OdeUpper, choose_betas
    from erpack.models.layers import architecture_of, upper_layers
    from erpack.models.split import depth, split_model
    from erpack.runtime.device import resolve_device
    from erpack.train.data import cache_source
    from erpack.train.loop import TrainConfig, fit, predict, score
    from erpack.train.metrics import primary_metric
    from erpack.train.modes import load_for_cache, prepare
    from erpack.train.taskmodel import TaskModel, expected_cache_of

    cfg, spec = cfg or TrainConfig(), spec or ShareSpec()
    if not data.splits.get("train"):
        raise InputError(f"no training documents: {data.source} labels none of the cache's documents as `train`")
    dev = resolve_device(cfg.device)
    k = reader.meta["layer"]
    _, model = load_for_cache(reader.meta, len(data.labels), data.task, cfg.seed, model_override)
    n = depth(model) - k
    if n < 1:
        raise InputError(f"the cache's layer {k} is the encoder's last: no upper layer to share; encode at a "
                         "smaller --layer")
    sources = {s: cache_source(reader, [e.id for e in v], data.lengths[s], cfg.prefetch, dev.type == "cuda")
               for s, v in data.splits.items()}
    albert = architecture_of(model).shared is not None
    distilled = []
    if albert:
        block = {"kind": "albert", "groups": upper_layers(model, k)}
    else:
        teacher = copy.deepcopy(model).to(dev).eval().requires_grad_(False)
        shared = tie_block(model, k, spec.init)
        model.to(dev)
        distilled = distill(teacher, model, k, sources["train"], cfg, spec, dev, progress)
        del teacher
        block = {"kind": "distilled", "init": spec.init, "layers": [k, k + n - 1],
                 "params": sum(p.numel() for p in shared.parameters()), "distill_epochs": spec.distill_epochs,
                 "distill_lr": spec.distill_lr, "distill": distilled}
    prepared = prepare(model, "upper", k)
    model.to(dev)
    _, upper = split_model(model, k)
    result = fit(task=data.task, mode="upper", lr=cfg.lr_for("upper"), cfg=cfg, params_of=model, modules=[upper],
                 forward=lambda x: upper(*x), train=sources["train"], y_train=data.y["train"],
                 validation=sources.get("validation"), y_validation=data.y.get("validation"),
                 num_classes=len(data.labels), device=dev, progress=progress, desc="shared block")
    model = prepared.finalize().eval()
    metric = primary_metric(data.task)

    validation = data.splits.get("validation", [])
    if validation:
        # an even spread of at most beta_docs validation documents (a cap on the grid's cost)
        rows = sorted(set(np.linspace(0, len(validation) - 1, min(len(validation), spec.beta_docs or len(validation)))
                          .round().astype(int).tolist()))
        held = cache_source(reader, [validation[i].id for i in rows], [data.lengths["validation"][i] for i in rows],
                            cfg.prefetch)
        y_held = data.y["validation"][rows]

        def validation_score(up: OdeUpper) -> float:
            logits = predict(held, lambda x: up(*x), [up], cfg.eval_batch_size, dev, cfg.max_tokens)
            return score(data.task, logits, y_held, len(data.labels))[metric]

        betas, tried = choose_betas(model, k, validation_score, list(range(1, n + 1)), grid or BETA_GRID)
    else:
        betas, tried = {str(s): n / s for s in range(1, n + 1)}, {}
    if not albert:
        untie(model, k)
    info = {"task": data.task, "labels": data.labels, "mode": "upper", "layer": k, "adapter": None,
            "cache": expected_cache_of(reader),
            "ode": {"block": block, "steps_trained": n, "betas": betas, "validation": tried, "metric": metric}}
    tm = TaskModel(model, info)
    if len(data.splits.get("test", [])):
        logits = predict(sources["test"], lambda x: tm.upper(*x), [tm.upper], cfg.eval_batch_size, dev, cfg.max_tokens)
        result.test = score(data.task, logits, data.y["test"], len(data.labels))
        result.test_logits = logits
    result.notes["distill"] = distilled
    return tm, result
