"""The exit rule's threshold, chosen on the validation split for an accuracy budget.

Every candidate threshold of the rule is simulated over the validation documents' stored exit outputs
(erpack.depth.rules.simulate: the same steps inference runs); the chosen one is the most aggressive
(fewest mean layers) whose validation accuracy is at most `budget` points below the task head's, the
last exit: what the same task model answers without exits (`erpack eval --no-early-exit`, the plain
exported graph). Ties go to the higher accuracy. The head is the reference for every rule (issue 22
states its target against the model without exits); the record says so (`reference: "head"`).

Patience and entropy answer with the head when no document stops early, so their never-stop-early end
always qualifies. DACT answers with the halting-weighted mixture of the exits, which may score below
the head: when even its best candidate is more than the budget below the head, the candidate with the
best validation accuracy is chosen (ties: fewer mean layers) and the record says `within_budget: false`
(erpack.depth.training turns that into a note). DACT's record also gives the mixture's validation
accuracy (`accuracy_mixture`). Records written before the head was the reference have no `reference`
key; their `accuracy_all_layers` is the mixture's for dact (`erpack.depth.rules.reference_of`).

Regression (dact only): the same, with Pearson's r in place of accuracy: the budget is in Pearson points
x 100 (budget 0.5: r at most 0.005 below the head's, the last exit's score), the candidates 0..1 by 0.01
(the unspent halting mass a document may stop with; 0 never stops early and answers the mixture).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from erpack.depth.losses import mixture_logits, mixture_scores
from erpack.depth.rules import REFERENCE, Rule, entropy, simulate


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


def head_logits(logits: np.ndarray) -> np.ndarray:
    """The task head's answer (N, C): the last exit, what the model gives without exits."""
    return np.asarray(logits[:, -1])


def mixture(logits: np.ndarray, halting: np.ndarray, regression: bool = False) -> np.ndarray:
    """DACT's answer with every layer run (N, C): the halting-weighted mixture of the exits (log-probabilities;
    regression: the mixed score (N, 1))."""
    zs, h = list(torch.as_tensor(logits).unbind(1)), torch.as_tensor(halting)
    return (mixture_scores(zs, h) if regression else mixture_logits(zs, h)).numpy()


def choose(rule: str, logits: np.ndarray, halting: np.ndarray | None, y: np.ndarray, budget: float) -> dict:
    """{threshold, accuracy, reference: "head", accuracy_all_layers (the head's), [accuracy_mixture (dact)],
    within_budget, mean_layers, layers, budget, documents, tried} on validation, from stored exit logits
    (N, n, C) and halting logits (N, n-1) or None. No candidate within budget of the head (DACT only: its
    mixture may be below the head): the most accurate one, `within_budget: false`."""
    logits = np.asarray(logits, np.float32)
    halting = None if halting is None else np.asarray(halting, np.float32)
    layers = logits.shape[1]
    reference = float((head_logits(logits).argmax(1) == y).mean())
    tried = []
    for t in candidates(rule, layers, logits):
        out, used = simulate(Rule(rule, t), logits, halting)
        tried.append({"threshold": t, "accuracy": float((out.argmax(1) == y).mean()), "mean_layers": float(used.mean())})
    ok = [r for r in tried if r["accuracy"] >= reference - budget / 100 - 1e-9]
    best = (min(ok, key=lambda r: (r["mean_layers"], -r["accuracy"])) if ok
            else min(tried, key=lambda r: (-r["accuracy"], r["mean_layers"])))
    extra = ({"accuracy_mixture": float((mixture(logits, halting).argmax(1) == y).mean())} if rule == "dact" else {})
    return {"threshold": best["threshold"], "accuracy": best["accuracy"], "reference": REFERENCE,
            "accuracy_all_layers": reference, **extra, "within_budget": bool(ok), "mean_layers": best["mean_layers"],
            "layers": layers, "budget": budget, "documents": int(len(y)), "tried": len(tried)}


def choose_regression(scores: np.ndarray, halting: np.ndarray, y: np.ndarray, budget: float, metrics) -> dict:
    """choose() for regression dact, from exit scores (N, n, 1) and `metrics(y, predicted) -> {pearson, mse}`
    (erpack.train.metrics.regression_metrics): {threshold, metric: "pearson", pearson, mse, reference: "head",
    pearson_all_layers, mse_all_layers (the head's), pearson_mixture, mse_mixture, within_budget, mean_layers,
    layers, budget, documents, tried}. A Pearson r that is nan (constant predictions) is out of budget. No
    candidate within budget of the head: the one with the highest r, `within_budget: false`."""
    scores = np.asarray(scores, np.float32)
    halting = np.asarray(halting, np.float32)
    layers = scores.shape[1]
    reference = metrics(y, head_logits(scores)[:, 0])
    mixed = metrics(y, mixture(scores, halting, regression=True)[:, 0])
    tried = []
    for t in candidates("dact", layers, scores):
        out, used = simulate(Rule("dact", t, regression=True), scores, halting)
        m = metrics(y, out[:, 0])
        tried.append({"threshold": t, "pearson": m["pearson"], "mse": m["mse"], "mean_layers": float(used.mean())})
    ok = [r for r in tried if r["pearson"] >= reference["pearson"] - budget / 100 - 1e-9]  # nan: False
    best = min(ok, key=_rank) if ok else min(tried, key=lambda r: (_rank(r)[1], r["mean_layers"]))
    return {"threshold": best["threshold"], "metric": "pearson", "pearson": best["pearson"], "mse": best["mse"],
            "reference": REFERENCE, "pearson_all_layers": reference["pearson"], "mse_all_layers": reference["mse"],
            "pearson_mixture": mixed["pearson"], "mse_mixture": mixed["mse"], "within_budget": bool(ok),
            "mean_layers": best["mean_layers"], "layers": layers, "budget": budget, "documents": int(len(y)),
            "tried": len(tried)}


def _rank(row: dict) -> tuple:
    """Fewest mean layers first, then the higher Pearson r (nan last)."""
    return row["mean_layers"], -np.nan_to_num(row["pearson"], nan=-2.0)
