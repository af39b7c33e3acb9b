"""The statistics of the result tables: mean and sd, paired differences, a paired-bootstrap interval,
and pooling over test deciles.

    mean_sd([0.8, 0.7])                                  # (0.75, 0.05): population sd (ddof=0)
    paired_bootstrap([(9, "1101", "1111")])              # 95% interval of the mean difference, points
    decile_means([(0, -25.0), (1, 0.0), (1, 2.0)])       # ({0: -25.0, 1: 1.0}, mean over deciles)
"""

from __future__ import annotations

import numpy as np


def mean_sd(values, ddof: int = 0) -> tuple[float, float]:
    """Mean and standard deviation of `values` (ddof=1: the sample sd, 0.0 for a single value)."""
    sd = float(np.std(values, ddof=ddof)) if len(values) > ddof else 0.0
    return float(np.mean(values)), sd


def correct_string(predicted, truth) -> str:
    """'1'/'0' per test document, in order: whether each prediction is right (what a bootstrap pairs)."""
    return "".join("1" if p == y else "0" for p, y in zip(predicted, truth))


def paired_bootstrap(pairs: list[tuple[int, str, str]], iterations: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% interval, in points, of the mean over `pairs` of (recycled - baseline) test accuracy, resampling
    the test documents of each decile (pairs on one decile share its resample): (decile, recycled '1'/'0'
    string, baseline '1'/'0' string) each."""
    rng = np.random.default_rng(seed)
    by_decile: dict = {}
    for decile, r, b in pairs:
        if len(r) != len(b):
            raise ValueError(f"decile {decile}: {len(r)} recycled against {len(b)} baseline test documents")
        diff = np.frombuffer(r.encode(), np.uint8).astype(np.int8) - np.frombuffer(b.encode(), np.uint8).astype(np.int8)
        by_decile.setdefault(decile, []).append(diff)
    total = np.zeros(iterations)
    for diffs in by_decile.values():
        idx = rng.integers(0, len(diffs[0]), size=(iterations, len(diffs[0])))
        for d in diffs:
            total += d[idx].mean(axis=1)
    lo, hi = np.percentile(100 * total / len(pairs), [2.5, 97.5])
    return float(lo), float(hi)


def decile_means(deltas: list[tuple[int, float]]) -> tuple[dict[int, float], float | None]:
    """Pooling over test deciles: the mean of each decile's values, and the mean of those means (each
    decile one sample, whatever its number of seeds); None when there are none."""
    by_decile: dict = {}
    for d, v in deltas:
        by_decile.setdefault(d, []).append(v)
    means = {d: float(np.mean(v)) for d, v in sorted(by_decile.items())}
    return means, (float(np.mean(list(means.values()))) if means else None)
