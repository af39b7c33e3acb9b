"""`erpack train --shared-block`: a task model whose upper layers share one block, run as ODE steps.

    tm, result = run_shared_block(reader, data, cfg, ShareSpec(distill_epochs=2, init="mean"))

The recipe is erpack.depth.distill's (the block, its distillation from the pretrained upper stack on
the cache), then the training loop of `upper` mode (erpack.train.loop) for the block and the head
(with `spec.random_steps`, each batch at a random step count: `random_steps_loss`), then the step
sizes on validation (erpack.depth.ode.choose_betas). See docs/depth.md.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import numpy as np

from erpack.depth.distill import ShareSpec, distill, tie_block, untie
from erpack.depth.ode import StepDraws
from erpack.errors import InputError
from erpack.runtime.device import resolve_device
from erpack.train.data import batch_plan, cache_source
from erpack.train.loop import TrainConfig, fit, optimizer_and_schedule, predict, score, seed_everything
from erpack.train.metrics import primary_metric
from erpack.train.modes import load_for_cache, prepare


def distill_block(teacher, student, k: int, train, cfg: TrainConfig, spec: ShareSpec, device,
                  progress: Callable | None = None, draws: StepDraws | None = None) -> list[dict]:
    """erpack.depth.distill.distill with the loop's seeds, batch plans and AdamW schedule (and, with `draws`,
    a drawn step count per batch)."""
    from erpack.models.layers import layer_list

    seed_everything(cfg.seed)
    steps = len(batch_plan(train.lengths, cfg.batch_size, seed=cfg.seed, max_tokens=cfg.max_tokens))
    optimizer, schedule = optimizer_and_schedule(list(layer_list(student)[k].parameters()), spec.distill_lr,
                                                 dataclasses.replace(cfg, epochs=max(1, spec.distill_epochs)), steps)

    def plan(epoch: int) -> list:
        return batch_plan(train.lengths, cfg.batch_size, seed=cfg.seed, epoch=epoch, max_tokens=cfg.max_tokens)

    return distill(teacher, student, k, train, plan, spec.distill_epochs, optimizer, schedule, device, progress,
                   draws)


def random_steps_loss(model, k: int, task: str, draws: StepDraws, tied: bool) -> Callable:
    """The fine-tuning loss of `--random-steps`: each batch runs the shared block S times with step size
    (L-k)/S, S from `draws` (one OdeUpper per S, views sharing the model's weights)."""
    from erpack.depth.ode import OdeUpper
    from erpack.train.loop import loss_fn

    uppers = {s: OdeUpper(model, k, s, tied=tied) for s in range(1, draws.n + 1)}

    def loss(inputs, y):
        up = uppers[draws.draw()]
        up.train()
        return loss_fn(task, up(*inputs), y)

    return loss


def run_shared_block(reader, data, cfg=None, spec: ShareSpec | None = None, model_override: str | None = None,
                     progress: Callable | None = None, grid=None):
    """Distil a shared block from the cache, tune it with the head, set the step sizes on validation.

    Returns (TaskModel with the record "ode", RunResult of the fine-tuning with the test score at L-k steps)."""
    from erpack.depth.ode import BETA_GRID, OdeUpper, choose_betas
    from erpack.models.layers import architecture_of, upper_layers
    from erpack.models.split import depth, split_model
    from erpack.train.taskmodel import TaskModel, expected_cache_of

    cfg, spec = cfg or TrainConfig(), spec or ShareSpec()
    if not data.splits.get("train"):
        raise InputError(f"no training documents: {data.source} labels none of the cache's documents as `train`")
    dev = resolve_device(cfg.device)
    k = reader.meta["layer"]
    _, model = load_for_cache(reader.meta, data.labels, data.task, cfg.seed, model_override)
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
        distill_draws = StepDraws(n, cfg.seed, salt=(1,)) if spec.random_distill else None  # its own stream
        distilled = distill_block(teacher, model, k, sources["train"], cfg, spec, dev, progress, distill_draws)
        del teacher
        block = {"kind": "distilled", "init": spec.init, "layers": [k, k + n - 1],
                 "params": sum(p.numel() for p in shared.parameters()), "distill_epochs": spec.distill_epochs,
                 "distill_lr": spec.distill_lr, "distill": distilled}
        if distill_draws:
            block["distill_random_steps"] = distill_draws.record()
    prepared = prepare(model, "upper", k)
    model.to(dev)
    _, upper = split_model(model, k)
    draws = StepDraws(n, cfg.seed) if spec.random_steps else None
    result = fit(task=data.task, mode="upper", lr=cfg.lr_for("upper"), cfg=cfg, params_of=model, modules=[upper],
                 forward=lambda x: upper(*x), train=sources["train"], y_train=data.y["train"],
                 validation=sources.get("validation"), y_validation=data.y.get("validation"),
                 num_classes=len(data.labels), device=dev, progress=progress, desc="shared block",
                 train_loss=random_steps_loss(model, k, data.task, draws, tied=not albert) if draws else None)
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
    if draws:
        info["ode"]["random_steps"] = draws.record()
    tm = TaskModel(model, info)
    if len(data.splits.get("test", [])):
        logits = predict(sources["test"], lambda x: tm.upper(*x), [tm.upper], cfg.eval_batch_size, dev, cfg.max_tokens)
        result.test = score(data.task, logits, data.y["test"], len(data.labels))
        result.test_logits = logits
    result.notes["distill"] = distilled
    return tm, result
