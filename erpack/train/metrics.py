"""Task metrics: accuracy and macro-F1 for classification, Pearson and MSE for regression, per-label and
micro/macro F1 and word accuracy for token classification (scored per word)."""

from __future__ import annotations

import numpy as np


def classification_metrics(y_true, y_pred, num_classes: int) -> dict:
    """Accuracy and macro-F1 over `num_classes` (a class with no true and no predicted example is
    left out of the macro average; one predicted but absent, or absent from predictions, scores 0)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.size == 0:
        return {"accuracy": float("nan"), "macro_f1": float("nan"), "n": 0}
    f1s = []
    for c in range(num_classes):
        tp = int(np.sum((y_pred == c) & (y_true == c)))
        fp = int(np.sum((y_pred == c) & (y_true != c)))
        fn = int(np.sum((y_pred != c) & (y_true == c)))
        if tp + fp + fn == 0:
            continue
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return {"accuracy": float(np.mean(y_true == y_pred)), "macro_f1": float(np.mean(f1s)), "n": int(y_true.size)}


def regression_metrics(y_true, y_pred) -> dict:
    """Pearson correlation (nan when either side is constant) and mean squared error."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.size == 0:
        return {"pearson": float("nan"), "mse": float("nan"), "n": 0}
    mse = float(np.mean((y_true - y_pred) ** 2))
    a, b = y_true - y_true.mean(), y_pred - y_pred.mean()
    denom = float(np.sqrt(np.sum(a * a) * np.sum(b * b)))
    pearson = float(np.sum(a * b) / denom) if denom > 0 else float("nan")
    return {"pearson": pearson, "mse": mse, "n": int(y_true.size)}


def primary_metric(task: str) -> str:
    """The metric early stopping and summaries use (higher is better)."""
    return {"regression": "pearson", "token-classification": "micro_f1"}.get(task, "accuracy")


def token_metrics(y_true, y_pred, labels: list[str]) -> dict:
    """Scores of per-word predictions (label ids; a word scored -1 is left out): precision, recall and F1
    per label, micro F1 over every label but an "O" first label (the label of words without a tag),
    macro F1 over the labels, and word accuracy. Primary: micro_f1."""
    return confusion_metrics(token_confusion(y_true, y_pred, len(labels)), labels)


def token_confusion(y_true, y_pred, n_labels: int) -> np.ndarray:
    """int64 (C, C): words of true label i predicted j (a word predicted -1, cut off, is left out). Counts
    add up: the distributed scorer sums its parts' and scores the sum (confusion_metrics)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    keep = y_pred >= 0
    out = np.zeros((n_labels, n_labels), dtype=np.int64)
    np.add.at(out, (y_true[keep], y_pred[keep]), 1)
    return out


def confusion_metrics(confusion, labels: list[str]) -> dict:
    """token_metrics' scores of a (C, C) confusion matrix (token_confusion)."""
    confusion = np.asarray(confusion, dtype=np.int64)
    n = int(confusion.sum())
    if n == 0:
        return {"micro_f1": float("nan"), "macro_f1": float("nan"), "accuracy": float("nan"), "per_label": {}, "n": 0}
    per, counts = {}, []
    for c, name in enumerate(labels):
        tp = int(confusion[c, c])
        fp = int(confusion[:, c].sum()) - tp
        fn = int(confusion[c, :].sum()) - tp
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        per[name] = {"precision": p, "recall": r, "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
                     "support": tp + fn}
        counts.append((tp, fp, fn))
    tagged = range(1 if labels and labels[0] == "O" else 0, len(labels))
    tp, fp, fn = (sum(counts[c][i] for c in tagged) for i in range(3))
    scored = [per[labels[c]]["f1"] for c in range(len(labels)) if sum(counts[c])]
    return {"micro_f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
            "macro_f1": float(np.mean(scored)) if scored else float("nan"),
            "accuracy": float(np.trace(confusion)) / n, "per_label": per, "n": n}


def token_metric_lines(m: dict) -> list[str]:
    """A token task's scores as the CLI prints them: the overall line, then one line per label."""
    lines = [f"micro-F1 {m['micro_f1']:.4f}  macro-F1 {m['macro_f1']:.4f}  word accuracy {m['accuracy']:.4f}  "
             f"({m['n']} words" + (f", {m['cut_words']} cut off by truncation, not scored" if m.get("cut_words") else "")
             + ")"]
    for name, p in m.get("per_label", {}).items():
        lines.append(f"  {name:<12} precision {p['precision']:.4f}  recall {p['recall']:.4f}  F1 {p['f1']:.4f}  "
                     f"support {p['support']}")
    return lines
