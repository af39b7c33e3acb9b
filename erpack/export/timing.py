"""Timing variants fairly on a shared machine: interleave them (A, B, C, A, B, C, ...) and take medians,
so load from other processes hurts every variant alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_medians(fns: dict[str, Callable[[], object]], runs: int = 20, warmup: int = 2) -> dict[str, dict]:
    """{name: {"median_ms", "min_ms", "runs"}} for each zero-argument callable, timed in turns."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: {"median_ms": statistics.median(t), "min_ms": min(t), "runs": len(t)} for name, t in times.items()}
