"""Timing on a shared machine: interleaved runs and medians, named sections, page-cache eviction,
and a description of the machine the numbers came from.

    interleaved_medians({"a": f, "b": g}, runs=20)   # A, B, A, B, ...: load hurts every variant alike
    sw = Stopwatch()
    with sw("read"):
        ...                                          # seconds accumulate per section
    summarize([1.2, 1.1, 1.3])                       # {"median", "min", "max", "spread", "runs"}
    evict(paths)                                     # POSIX_FADV_DONTNEED on each file (cold-cache runs)
    describe_machine(threads=2)                      # CPU model, cores, load, torch threads, versions
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

# The stages of an inference step, as a Stopwatch of `erpack bench` charges them, in pipeline order.
SECTIONS = ("tokenize", "read", "decompress", "dequantize", "pad", "host_to_device", "compute")


def interleaved_times(fns: dict[str, Callable[[], object]], runs: int = 20, warmup: int = 2) -> dict[str, list[float]]:
    """{name: [seconds per run]} for each zero-argument callable: `warmup` untimed rounds, then `runs`
    rounds in turns (A, B, C, A, B, C, ...), so load from other processes hurts every variant alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def interleaved_medians(fns: dict[str, Callable[[], object]], runs: int = 20, warmup: int = 2) -> dict[str, dict]:
    """{name: {"median_ms", "min_ms", "runs"}} for each zero-argument callable, timed in turns."""
    times = interleaved_times(fns, runs, warmup)
    return {name: {"median_ms": statistics.median(t) * 1e3, "min_ms": min(t) * 1e3, "runs": len(t)}
            for name, t in times.items()}


class Stopwatch:
    """Seconds per named section, accumulated over one timed run (a run is many batches)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, section: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[section] = self.seconds.get(section, 0.0) + time.perf_counter() - t0

    def add(self, section: str, seconds: float) -> None:
        self.seconds[section] = self.seconds.get(section, 0.0) + seconds


def summarize(values: list[float]) -> dict:
    """Median, min, max and spread ((max - min) / median) of repeated measurements."""
    med = statistics.median(values)
    return {"median": med, "min": min(values), "max": max(values),
            "spread": (max(values) - min(values)) / med if med else 0.0, "runs": len(values)}


def evict(paths) -> dict:
    """Ask the kernel to drop the page-cache pages of each file (POSIX_FADV_DONTNEED).

    Pages still mapped by a process are not dropped, so callers close their readers first. Returns
    {"files", "bytes", "supported"}; where posix_fadvise does not exist (macOS), nothing is evicted.
    """
    paths = [Path(p) for p in paths]
    if not hasattr(os, "posix_fadvise"):
        return {"files": 0, "bytes": 0, "supported": False}
    total = 0
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            total += os.fstat(fd).st_size
        finally:
            os.close(fd)
    return {"files": len(paths), "bytes": total, "supported": True}


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # not installed
        return None


def describe_machine(threads: int | None = None) -> dict:
    """What ran the benchmark: CPU, cores, load, threads, GPU (if any) and library versions."""
    import torch

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average": [round(x, 2) for x in load] if load else None,
        "torch_threads": torch.get_num_threads(),
        "threads_asked": threads,
        "gpu": gpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {m: _version(m) for m in ("erpack", "torch", "transformers", "onnxruntime", "numpy", "zstandard")},
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
