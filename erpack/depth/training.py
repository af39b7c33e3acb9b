"""Training exits from the cache (`erpack train ... --early-exit RULE`), and choosing the rule's threshold.

`ExitSpec` is what the flags ask for. `exit_setup` gives the pieces the shared training loop
(erpack.train.loop.fit) runs: the exits (one after each upper layer but the last), the forward that
validation scores (the prediction with every layer run) and the training loss (erpack.depth.losses).
The exits train jointly with whatever the mode trains (upper: layers k..L-1 and the head; adapter: the
adapters and the head; head: the head alone), from the seed. `finish` then stores every exit's output
on the validation split, chooses the threshold there (erpack.depth.threshold: within the budget of the task
head, the last exit, what the model answers without exits), and scores the test split with exits (batch
compaction) and without (`test_all_layers`: the head; dact also `test_mixture`, its halting-weighted mixture
with every layer run); the record goes to erpack_task.json as `early_exit` (with `reference: "head"`) and
the exits to `exits.safetensors` beside the model. When no DACT threshold kept validation within the budget
of the head (its mixture scores more than the budget below the head), the most accurate one is kept, and the
record's `validation.within_budget` is false and its `note` says so (`budget_note`; `erpack train` prints it).

Regression: dact only. Each exit gives a score, the halting units weigh them (erpack.depth.losses), and
the budget is in Pearson points x 100 (erpack.depth.threshold); patience and entropy are refused.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from erpack.depth.rules import REFERENCE, REGRESSION_RULES, RULES, Rule, check_threshold
from erpack.errors import InputError

DEFAULT_PONDER = 0.05
EXIT_LR_FLOOR = 1e-3  # the default exits' lr is the run's, at least this: head mode's default (a fresh head's)
TASKS = ("classification", "pair-classification", "regression")  # regression: dact only (REGRESSION_RULES)


@dataclass(frozen=True)
class ExitSpec:
    """--early-exit RULE --exit-budget POINTS --ponder WEIGHT [--exit-threshold X] [--exit-lr LR]."""

    rule: str
    budget: float = 0.5  # accuracy (regression: Pearson r) points x 100 the threshold may cost on validation vs the head
    ponder: float | None = None  # dact: weight of the expected share of layers run in the loss (default 0.05)
    threshold: float | None = None  # set: use it instead of choosing on validation
    lr: float | None = None  # the exits' and halting units' learning rate; None: exit_lr's default

    def __post_init__(self):
        if self.rule not in RULES:
            raise InputError(f"unknown exit rule {self.rule!r}; rules: {', '.join(RULES)}")
        if not 0.0 <= self.budget <= 100.0:
            raise InputError(f"--exit-budget is accuracy points (regression: Pearson r x 100), 0 to 100, the exits "
                             f"may cost on validation against the task head; got {self.budget}")
        if self.ponder is None:
            object.__setattr__(self, "ponder", DEFAULT_PONDER if self.rule == "dact" else 0.0)
        if self.ponder < 0:
            raise InputError(f"--ponder weighs the layers run in DACT's loss and cannot be negative; got {self.ponder}")
        if self.ponder and self.rule != "dact":
            raise InputError(f"--ponder is DACT's penalty; the {self.rule} rule trains without it (drop --ponder)")
        if self.lr is not None and not (self.lr > 0 and np.isfinite(self.lr)):
            raise InputError(f"--exit-lr is the exits' learning rate, a number above 0 (e.g. 1e-3); got {self.lr}")

    def as_dict(self) -> dict:
        return asdict(self)


def exit_lr(spec: ExitSpec, lr: float) -> float:
    """The learning rate the exits and halting units train at in a run at `lr`: --exit-lr when given, else the
    run's lr but at least EXIT_LR_FLOOR. They start untrained, like a fresh head, where upper mode's 1e-4 is for
    pretrained layers; measured on MiniLM k=3 RT (docs/results/early-exit-lr.md), 1e-3 let the halting units
    tell documents apart where 1e-4 left them near 0.5."""
    return spec.lr if spec.lr is not None else max(lr, EXIT_LR_FLOOR)


def check_task(spec: ExitSpec, task: str, layers: int, num_labels: int) -> None:
    """Refuse, before training, what the rules cannot do (InputError: exit 2)."""
    if task not in TASKS:
        raise InputError(f"--early-exit {spec.rule} works on classification and regression tasks ({', '.join(TASKS)}); "
                         f"not on a {task} task. Train without --early-exit")
    if task == "regression" and spec.rule not in REGRESSION_RULES:
        raise InputError(f"--early-exit {spec.rule} compares the exits' classes, and a regression score has none; "
                         f"use --early-exit {' or '.join(REGRESSION_RULES)} (a learned halting unit) for regression")
    if layers < 2:
        raise InputError(f"--early-exit needs two or more upper layers to stop between; this cache's layer leaves "
                         f"{layers}. Encode at a lower --layer")
    if spec.threshold is not None:
        check_threshold(spec.rule, spec.threshold, num_labels, layers, regression=task == "regression")


def exit_setup(model, layer: int, num_labels: int, spec: ExitSpec, seed: int, task: str = "classification"):
    """(segments, exits, forward, train_loss) for erpack.train.loop.fit; a regression task's exits give one
    score each."""
    from erpack.depth.exits import Exits
    from erpack.depth.losses import exit_loss
    from erpack.depth.runner import all_layers_logits, exit_outputs
    from erpack.depth.segments import Segments
    segments = Segments(model, layer)
    torch.manual_seed(seed + 1)  # the exits' init depends on the seed only (the head's was drawn first)
    config = model.config
    regression = task == "regression"
    exits = Exits(getattr(config, "hidden_size", None) or config.dim, 1 if regression else num_labels,
                  len(segments) - 1, spec.rule == "dact")
    exits.to(next(model.parameters()).device)

    def forward(inputs):
        logits, halting = exit_outputs(segments, exits, *inputs)
        return all_layers_logits(spec.rule, logits, halting, regression)

    def train_loss(inputs, y):
        logits, halting = exit_outputs(segments, exits, *inputs)
        return exit_loss(spec.rule, logits, halting, y, spec.ponder, regression)

    return segments, exits, forward, train_loss


@torch.no_grad()
def stored_outputs(em, batches, n: int, device):
    """Every exit's logits (N, n, C) and halting logits (N, n-1) or None over `batches` of (rows, (hidden, mask))
    covering N documents (no early stop)."""
    em.eval()
    logits = halting = None
    for rows, (hidden, mask) in batches:
        zs, hs = em.outputs(hidden.to(device), mask.to(device))
        z = torch.stack(zs, dim=1).float().cpu().numpy()
        if logits is None:
            logits = np.zeros((n, *z.shape[1:]), np.float32)
            halting = np.zeros((n, z.shape[1] - 1), np.float32) if hs is not None else None
        logits[rows] = z
        if hs is not None:
            halting[rows] = hs.float().cpu().numpy()
    return logits, halting


@torch.no_grad()
def run_split(em, batches, n: int, device, bar=None):
    """(logits (N, C), layers (N,)) of the exit model over `batches` of (rows, (hidden, mask)), compacted."""
    out = np.zeros((n, em.exits.num_labels), dtype=np.float32)
    layers = np.zeros(n, dtype=np.int64)
    for rows, (hidden, mask) in batches:
        out[rows], layers[rows] = em.run(hidden.to(device), mask.to(device))
        if bar:
            bar.update(1)
    return out, layers


def finish(tm, exits, spec: ExitSpec, splits: dict, y: dict, device, result, score) -> dict:
    """Choose the threshold on validation, score test with exits, with the head and (dact) the mixture; returns
    the `early_exit` record (and fills result.test / result.notes["early_exit"]); `spec.lr`: the exits' learning
    rate the run used. `splits`: {split: (N, batches())}, `score(task, logits, y, classes)` the task's metrics
    (erpack.train.loop.score)."""
    from erpack.depth.runner import ExitModel
    from erpack.depth.threshold import choose, choose_regression, head_logits, mixture

    regression = tm.task == "regression"
    em = ExitModel(tm, exits, Rule(spec.rule, spec.threshold if spec.threshold is not None else 0.0, regression))
    em.to(device)
    record = {"rule": spec.rule, "budget": spec.budget, "ponder": spec.ponder, "lr": spec.lr,
              "exits": exits.record(), "layers": em.layers, "reference": REFERENCE}
    n_val, val = splits.get("validation", (0, None))
    if spec.threshold is not None or not n_val:
        if spec.threshold is None:
            raise InputError("--early-exit chooses its threshold on the validation split, and the labels give none; "
                             "label some documents `validation`, or give --exit-threshold")
        record.update(threshold=spec.threshold, chosen_on=None)
    else:
        logits, halting = stored_outputs(em, val(), n_val, device)
        chosen = (choose_regression(logits, halting, y["validation"], spec.budget,
                                    lambda yy, p: score(tm.task, p[:, None], yy, 0)) if regression
                  else choose(spec.rule, logits, halting, y["validation"], spec.budget))
        record.update(threshold=chosen.pop("threshold"), chosen_on="validation", validation=chosen)
        if not chosen["within_budget"]:
            record["note"] = budget_note(spec.rule, record["threshold"], chosen)
    em.rule = Rule(spec.rule, record["threshold"], regression)
    n_test, test = splits.get("test", (0, None))
    if n_test:
        z, used = run_split(em, test(), n_test, device)
        result.test = dict(score(tm.task, z, y["test"], len(tm.labels)), mean_layers=float(used.mean()),
                           mean_layers_fraction=float(used.mean() / em.layers))
        result.test_logits = z
        stored, halts = stored_outputs(em, test(), n_test, device)
        record["test_all_layers"] = score(tm.task, head_logits(stored), y["test"], len(tm.labels))
        if spec.rule == "dact":
            record["test_mixture"] = score(tm.task, mixture(stored, halts, regression), y["test"], len(tm.labels))
    result.notes["early_exit"] = {k: v for k, v in record.items() if k != "exits"}
    return record


def budget_note(rule: str, threshold: float, chosen: dict) -> str:
    """What to say when no threshold kept the validation metric within the budget of the task head's (the chosen
    row of erpack.depth.threshold.choose / choose_regression, `within_budget: false`)."""
    key = chosen.get("metric", "accuracy")
    what = "Pearson r" if key == "pearson" else "accuracy"
    units = "point (Pearson r x 100)" if key == "pearson" else "point"
    mixed = chosen.get(f"{key}_mixture")
    return (f"no {rule} threshold kept validation {what} within {chosen['budget']:g} {units} of the task head's "
            f"{chosen[key + '_all_layers']:.4f}"
            + (f" (the {rule} mixture with every layer run scores {mixed:.4f})" if mixed is not None else "")
            + f"; kept threshold {threshold:g}, the best there: {what} {chosen[key]:.4f} at {chosen['mean_layers']:.2f} "
            f"of {chosen['layers']} layers. For the head's answer run without exits (--no-early-exit in eval, "
            f"predict and serve), or train again with a larger --exit-budget")
