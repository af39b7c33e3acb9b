"""When a document stops: the exit rules `dact`, `patience` (PABEE) and `entropy` (DeeBERT).

A rule sees, after each upper layer j = 0..n-1, that exit's logits (B, C) and (DACT) halting logit
(B,), keeps a per-document state, and says which documents stop there and what they predict. Every
decision is per document (row-wise), so running a batch whole or compacting it as documents leave
gives each document the same result; `simulate` runs the same steps over stored exit outputs, which
is how the threshold is chosen on validation (erpack.depth.threshold).

- dact: halting-weighted accumulation. With h_j = sigmoid(halting) (1 at the last layer), the weight
  of exit j is w_j = h_j * R_{j-1}, R_j = prod_{i<=j} (1 - h_i) the mass not yet given out, and the
  accumulated prediction A_j = sum_{i<=j} w_i softmax(logits_i). The final prediction (every layer run)
  is A_{n-1}; after layer j each class can still gain at most R_j, so the top class of A_j can no longer
  be overtaken once A_j[top] - A_j[runner-up] >= R_j. The rule stops when that gap >= threshold * R_j:
  threshold 1 is DACT's exact condition, smaller values relax it (0 stops after the first layer).
- patience: stop when the exits' argmax has stayed the same for `threshold` consecutive layers
  (an integer >= 1; the prediction is that exit's).
- entropy: stop at the first exit whose softmax entropy (nats) is below `threshold` (0 never stops early;
  at most ln C).

Regression (`regression=True`: each exit gives one score (B, 1)) has dact only, ACT's rule: the accumulated
score is A_j = sum_{i<=j} w_i s_i, and a document stops at the first layer where its accumulated halting
probability 1 - R_j reaches 1 - threshold (R_j <= threshold); the remaining mass R_j goes to the score of
the exit it stops at, so its output is A_j + R_j s_j. The output differs from the every-layer mixture by
at most R_j times the spread of the later exits' scores: threshold 0 never stops early (the every-layer
mixture exactly), 1 stops after the first layer.
"""

from __future__ import annotations

import math

import numpy as np

from erpack.errors import InputError

RULES = ("dact", "patience", "entropy")
REGRESSION_RULES = ("dact",)  # patience and entropy compare classes; a score has none
REFERENCE = "head"  # what a threshold's budget is measured against (records before it had no `reference`)


def reference_of(rule: str, record: dict) -> str:
    """What a validation record's `_all_layers` values and budget were measured against: its `reference`, else
    (written before the head was the reference) DACT's mixture or the other rules' head."""
    return record.get("reference") or ("mixture" if rule == "dact" else "head")


def every_layer_scores(record: dict) -> dict:
    """The test scores of a rule's own answer with every layer run, from a task model's early-exit record: DACT's
    mixture (`test_mixture`; a record from before the head was the reference has it as `test_all_layers`),
    the other rules' head (`test_all_layers`)."""
    return record.get("test_mixture") or record["test_all_layers"]


def check_threshold(rule: str, threshold: float, num_labels: int, layers: int, regression: bool = False) -> float:
    """The threshold if it is in the rule's range, else InputError saying the range."""
    if regression and rule not in REGRESSION_RULES:
        raise InputError(f"the {rule} rule compares classes, and a regression score has none; regression exits "
                         f"use {' or '.join(REGRESSION_RULES)}")
    if regression and not 0.0 <= threshold <= 1.0:
        raise InputError(f"a regression dact threshold is the halting mass a document may leave unspent (it stops "
                         f"once its accumulated halting probability reaches 1 - threshold), between 0 and 1; "
                         f"got {threshold}")
    if rule == "dact" and not 0.0 <= threshold <= 1.0:
        raise InputError(f"a dact threshold is the share of the remaining halting mass the top class must lead by, "
                         f"between 0 and 1; got {threshold}")
    if rule == "patience" and (threshold != int(threshold) or not 1 <= threshold <= layers):
        raise InputError(f"a patience threshold is a whole number of layers from 1 to {layers} (the upper layers); "
                         f"got {threshold}")
    if rule == "entropy" and not 0.0 <= threshold <= math.log(num_labels):
        raise InputError(f"an entropy threshold is in nats, between 0 and ln {num_labels} = {math.log(num_labels):.4f} "
                         f"for {num_labels} labels; got {threshold}")
    return float(threshold)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def entropy(z: np.ndarray) -> np.ndarray:
    """Softmax entropy (nats) of logits (..., C) -> (...)."""
    p = softmax(z)
    return -(p * np.log(np.maximum(p, 1e-12))).sum(-1)


class Rule:
    """One rule at one threshold: `start(B, C)`, then `step(state, logits, halting, last)` per layer, on numpy
    arrays (float32), so PyTorch and ONNX Runtime share every decision. `regression`: the exits give scores
    (B, 1) and dact stops by ACT's rule (module docstring)."""

    def __init__(self, name: str, threshold: float, regression: bool = False):
        if name not in RULES:
            raise InputError(f"unknown exit rule {name!r}; rules: {', '.join(RULES)}")
        self.name, self.threshold, self.regression = name, float(threshold), regression

    def start(self, batch: int, classes: int) -> dict:
        if self.name == "dact":
            return {"acc": np.zeros((batch, classes), np.float32), "rem": np.ones(batch, np.float32)}
        if self.name == "patience":
            return {"prev": np.full(batch, -1, np.int64), "count": np.zeros(batch, np.int64)}
        return {}

    def step(self, state: dict, logits: np.ndarray, halting: np.ndarray | None, last: bool):
        """(state, stop (B,) bool, output logits (B, C)) after one layer's exit."""
        logits = np.asarray(logits, dtype=np.float32)
        if self.regression and self.name == "dact":  # ACT: stop once the unspent halting mass is <= threshold
            h = np.ones(len(logits), np.float32) if last else (1 / (1 + np.exp(-np.asarray(halting, np.float32))))
            acc = state["acc"] + (state["rem"] * h)[:, None] * logits  # (B, 1)
            rem = state["rem"] * (1 - h)
            stop, out = rem <= np.float32(self.threshold), acc + rem[:, None] * logits  # the rest to this exit
            state = {"acc": acc, "rem": rem}
        elif self.name == "dact":
            h = np.ones(len(logits), np.float32) if last else (1 / (1 + np.exp(-np.asarray(halting, np.float32))))
            acc = state["acc"] + (state["rem"] * h)[:, None] * softmax(logits)
            rem = state["rem"] * (1 - h)
            top2 = -np.sort(-acc, axis=1)[:, :2]
            stop = (top2[:, 0] - top2[:, 1]) >= np.float32(self.threshold) * rem
            out = np.log(np.maximum(acc / np.maximum(acc.sum(1, keepdims=True), 1e-12), 1e-12))
            state = {"acc": acc, "rem": rem}
        elif self.name == "patience":
            pred = logits.argmax(1)
            count = np.where(pred == state["prev"], state["count"] + 1, 0)
            stop, out, state = count >= self.threshold, logits, {"prev": pred, "count": count}
        else:
            stop, out = entropy(logits) < np.float32(self.threshold), logits
        if last:
            stop = np.ones(len(logits), dtype=bool)
        return state, stop, out.astype(np.float32)

    @staticmethod
    def keep(state: dict, rows: np.ndarray) -> dict:
        """The state of the documents at `rows` (those that go on)."""
        return {k: v[rows] for k, v in state.items()}


def simulate(rule: Rule, logits: np.ndarray, halting: np.ndarray | None):
    """Every document's (prediction logits (N, C), layers run (N,)) from stored exit outputs: logits (N, n, C),
    halting (N, n-1) or None."""
    logits = np.asarray(logits, np.float32)
    n_docs, n, classes = logits.shape
    state = rule.start(n_docs, classes)
    out = np.zeros((n_docs, classes), np.float32)
    layers = np.zeros(n_docs, np.int64)
    done = np.zeros(n_docs, bool)
    for j in range(n):
        h = None if halting is None or j == n - 1 else halting[:, j]
        state, stop, o = rule.step(state, logits[:, j], h, j == n - 1)
        new = stop & ~done
        out[new], layers[new] = o[new], j + 1
        done |= stop
    return out, layers
