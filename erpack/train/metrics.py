"""Task metrics: accuracy and macro-F1 for classification, Pearson and MSE for regression."""

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
    return "pearson" if task == "regression" else "accuracy"
