"""Shared-block distillation from the cache: one block learns to reproduce an encoder's upper stack.

    tie_block(model, k, "mean"); distill(teacher, model, k, source, plan, epochs, optimizer, schedule, dev)

erpack.train.shared.run_shared_block runs the whole recipe (`erpack train --shared-block`):

1. The block: a copy of layer k, its weights the mean of layers k..L-1's (`init="mean"`) or layer k's
   own (`init="layer"`); it replaces every upper layer of the model (one module, L-k entries).
2. Distillation (`distill_epochs`): on the cached training documents, the block run L-k unit steps
   learns the pretrained upper stack's trajectory: the mean squared error to the teacher's state after
   each of its layers, plus the final state's again (padding excluded). No label is used.
3. Fine-tuning: the block and the head train for the task (erpack.train.loop.fit, `upper` mode's
   learning rate), running L-k unit steps; with `random_steps` each batch runs S steps of size (L-k)/S,
   S drawn from 1..L-k (erpack.depth.ode.StepDraws, seeded by the run's seed), so the block learns to
   take larger steps too (validation still scores L-k steps to pick the best epoch). `random_distill`
   draws S in step 2 as well: the states of S steps that land on a teacher layer are its targets.
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
    random_steps: bool = False  # fine-tune each batch at S steps of size (L-k)/S, S drawn from 1..L-k
    random_distill: bool = False  # distil each batch at a drawn S too, against the teacher's states it lands on

    def __post_init__(self):
        if self.init not in INITS:
            raise InputError(f"--block-init {self.init!r}: one of {', '.join(INITS)}")
        if self.distill_epochs < 0:
            raise InputError(f"--distill-epochs {self.distill_epochs}: must be 0 or more")
        if self.random_distill and not self.random_steps:
            raise InputError("--random-distill draws the step count in distillation as --random-steps does in "
                             "fine-tuning; add --random-steps")


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


def distill(teacher: nn.Module, student: nn.Module, k: int, train, plan: Callable[[int], list], epochs: int,
            optimizer, schedule, device, progress: Callable | None = None, draws=None) -> list[dict]:
    """Train the student's shared block (layer k of its list) on the teacher's upper-stack trajectory.

    `train` is a source of cached (hidden, mask) batches (erpack.train.data), `plan(epoch)` its batches
    for an epoch, `optimizer` / `schedule` over the block's parameters. With `draws` (an
    erpack.depth.ode.StepDraws) each batch runs S steps of size (L-k)/S, each compared with the
    teacher's state where it lands on a layer (erpack.depth.ode.matched_steps; the final state always).
    One record per epoch."""
    from erpack.depth.ode import OdeUpper, matched_steps
    from erpack.models.layers import layer_list
    from erpack.models.split import depth

    n = depth(teacher) - k
    teach = OdeUpper(teacher, k, n, 1.0).eval()
    learners = {s: OdeUpper(student, k, s, tied=True).eval() for s in (range(1, n + 1) if draws else [n])}
    layer_list(student)[k].requires_grad_(True)
    records = []
    for epoch in range(epochs):
        batches = plan(epoch)
        bar = progress(total=len(batches), desc=f"distill epoch {epoch + 1}/{epochs}", unit="batch") if progress else None
        t0, losses, finals = time.perf_counter(), [], []
        for _, (hidden, mask) in train.batches(batches):
            hidden, mask = hidden.to(device), mask.to(device)
            keep = mask.bool()
            with torch.no_grad():
                want = teach.trajectory(hidden, mask)
            steps = draws.draw() if draws else n
            got = learners[steps].trajectory(hidden, mask)
            per_step = [_masked_mse(got[i], want[j], keep) for i, j in matched_steps(n, steps)]
            loss = torch.stack(per_step).mean() + per_step[-1]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
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
