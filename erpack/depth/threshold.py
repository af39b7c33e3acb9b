"""The exit rule's threshold, chosen on the validation split for an accuracy budget.

Every candidate threshold of the rule is simulated over the validation documents' stored exit outputs
(erpack.depth.rules.simulate: the same steps inference runs); the chosen one is the most aggressive
(fewest mean layers) whose validation accuracy is at most `budget` points below the same model with
every layer run (DACT: the full halting-weighted mixture; patience, entropy: the task head). Ties go to
the higher accuracy. The rule's never-stop-early end is always a candidate, so one always qualifies.

Regression (dact only): the same, with Pearson's r in place of accuracy: the budget is in Pearson points
x 100 (budget 0.5: r at most 0.005 below the every-layer mixture's), the candidates 0..1 by 0.01 (the
unspent halting mass a document may stop with; 0 never stops early, and always qualifies).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from erpack.depth.losses import mixture_logits, mixture_scores
from erpack.depth.rules import Rule, entropy, simulate


def candidates(rule: str, layers: int, logits: np.ndarray) -> list[float]:
    """Thresholds to try, from exit logits (N, n, C): dact 0..1 by 0.01, patience 1..n, entropy 0 and the
    quantiles of the exits' entropies (each
    just above one, so the documents at it stop; at most ln C)."""
    if rule == "dact":
        return [round(x, 2) for x in np.linspace(0, 1, 101)]
    if rule == "patience":
        return [float(t) for t in range(1, layers + 1)]
    values = entropy(np.asarray(logits[:, :-1], np.float32)).flatten()
    top = math.log(logits.shape[-1])
    qs = np.quantile(values, np.linspace(0.01, 1.0, 100)) if values.size else np.array([])
    return sorted({0.0, *(float(min(np.nextafter(np.float32(q), np.float32(np.inf)), top)) for q in qs)})  # just above: the rule is `<`


def reference_logits(rule: str, logits: np.ndarray, halting: np.ndarray | None, regression: bool = False) -> np.ndarray:
    """The prediction with every layer run (N, C)."""
    if rule == "dact" and regression:
        return mixture_scores(list(torch.as_tensor(logits).unbind(1)), torch.as_tensor(halting)).numpy()
    if rule == "dact":
        return mixture_logits(list(torch.as_tensor(logits).unbind(1)), torch.as_tensor(halting)).numpy()
    return np.asarray(logits[:, -1])


def choose(rule: str, logits: np.ndarray, halting: np.ndarray | None, y: np.ndarray, budget: float) -> dict:
    """{threshold, accuracy, accuracy_all_layers, mean_layers, layers, budget, tried} on validation, from
    stored exit logits (N, n, C) and halting logits (N, n-1) or None."""
    logits = np.asarray(logits, np.float32)
    halting = None if halting is None else np.asarray(halting, np.float32)
    layers = logits.shape[1]
    reference = float((reference_logits(rule, logits, halting).argmax(1) == y).mean())
    best = None
    tried = []
    for t in candidates(rule, layers, logits):
        out, used = simulate(Rule(rule, t), logits, halting)
        acc = float((out.argmax(1) == y).mean())
        mean = float(used.mean())
        tried.append({"threshold": t, "accuracy": acc, "mean_layers": mean})
        if acc >= reference - budget / 100 - 1e-9 and (best is None or (mean, -acc) < (best["mean_layers"], -best["accuracy"])):
            best = tried[-1]
    return {"threshold": best["threshold"], "accuracy": best["accuracy"], "accuracy_all_layers": reference,
            "mean_layers": best["mean_layers"], "layers": layers, "budget": budget, "documents": int(len(y)),
            "tried": len(tried)}


def choose_regression(scores: np.ndarray, halting: np.ndarray, y: np.ndarray, budget: float, metrics) -> dict:
    """choose() for regression dact, from exit scores (N, n, 1) and `metrics(y, predicted) -> {pearson, mse}`
    (erpack.train.metrics.regression_metrics): {threshold, metric: "pearson", pearson, mse, pearson_all_layers,
    mse_all_layers, mean_layers, layers, budget, documents, tried}. A Pearson r that is nan (constant
    predictions) is out of budget; threshold 0 (the every-layer mixture) always qualifies."""
    scores = np.asarray(scores, np.float32)
    halting = np.asarray(halting, np.float32)
    layers = scores.shape[1]
    reference = metrics(y, reference_logits("dact", scores, halting, regression=True)[:, 0])
    best, tried = None, []
    for t in candidates("dact", layers, scores):
        out, used = simulate(Rule("dact", t, regression=True), scores, halting)
        m = metrics(y, out[:, 0])
        row = {"threshold": t, "pearson": m["pearson"], "mse": m["mse"], "mean_layers": float(used.mean())}
        tried.append(row)
        ok = t == 0.0 or m["pearson"] >= reference["pearson"] - budget / 100 - 1e-9  # nan: False
        if ok and (best is None or _rank(row) < _rank(best)):
            best = row
    return {"threshold": best["threshold"], "metric": "pearson", "pearson": best["pearson"], "mse": best["mse"],
            "pearson_all_layers": reference["pearson"], "mse_all_layers": reference["mse"],
            "mean_layers": best["mean_layers"], "layers": layers, "budget": budget, "documents": int(len(y)),
            "tried": len(tried)}


def _rank(row: dict) -> tuple:
    """Fewest mean layers first, then the higher Pearson r (nan last)."""
    return row["mean_layers"], -np.nan_to_num(row["pearson"], nan=-2.0)
