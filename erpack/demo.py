"""The built-in demo: the real MiniLM split at its middle layer over real Rotten Tomatoes reviews.

It checks that upper(lower(x)) reproduces the full model on real padded batches, and times the
lower stack, the upper stack and the full model, per layer, so the compute bound L/(L-k) of
recycling can be read beside what the split really saves on this machine.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable

import torch

from erpack.assets import load_dataset
from erpack.batching import length_batches
from erpack.models import load_model, split_model


def _timed(fn: Callable[[], torch.Tensor], repeats: int) -> tuple[torch.Tensor, float]:
    """Median seconds of `repeats` runs of fn (after one warm-up run), and its output."""
    out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return out, times[len(times) // 2]


def run_demo(
    model: str = "minilm",
    dataset: str = "rotten_tomatoes",
    layer: int | None = None,
    documents: int = 256,
    batch_size: int = 32,
    max_length: int = 128,
    repeats: int = 3,
    progress: Callable | None = None,
) -> dict:
    """Split `model` at `layer` (default: the middle) and return parity and timings as a dict."""
    loaded = load_model(model)
    num_layers = loaded.num_layers
    k = num_layers // 2 if layer is None else layer
    lower, upper = split_model(loaded.model, k)
    records = load_dataset(dataset, split="validation", limit=documents)
    encoded = [loaded.tokenizer(r.text, truncation=True, max_length=max_length)["input_ids"] for r in records]
    batches = length_batches([len(e) for e in encoded], batch_size)
    pad = loaded.tokenizer.pad_token_id or 0

    totals = {"lower": 0.0, "upper": 0.0, "full": 0.0}
    worst, tokens = 0.0, 0
    iterator = progress(batches, desc="demo batches") if progress else batches
    with torch.no_grad():
        for batch in iterator:
            longest = max(len(encoded[i]) for i in batch)
            ids = torch.full((len(batch), longest), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), longest), dtype=torch.long)
            for row, i in enumerate(batch):
                ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
                mask[row, : len(encoded[i])] = 1
            tokens += int(mask.sum())
            hidden, t_lower = _timed(lambda: lower(ids, mask), repeats)  # noqa: B023
            out, t_upper = _timed(lambda: upper(hidden, mask), repeats)  # noqa: B023
            full, t_full = _timed(lambda: loaded.model(input_ids=ids, attention_mask=mask).last_hidden_state,  # noqa: B023
                                  repeats)
            keep = mask.bool()
            worst = max(worst, (out[keep] - full[keep]).abs().max().item())
            totals["lower"] += t_lower
            totals["upper"] += t_upper
            totals["full"] += t_full

    return {
        "model": model,
        "model_path": loaded.path,
        "weights_sha256": loaded.sha256,
        "dataset": dataset,
        "documents": len(records),
        "tokens": tokens,
        "batches": len(batches),
        "num_layers": num_layers,
        "layer": k,
        "parity_max_abs_diff": worst,
        "seconds": totals,
        "ms_per_layer": {
            "lower": 1e3 * totals["lower"] / max(k, 1),
            "upper": 1e3 * totals["upper"] / max(num_layers - k, 1),
            "full": 1e3 * totals["full"] / num_layers,
        },
        "speedup_upper_vs_full": totals["full"] / totals["upper"] if totals["upper"] else None,
        "compute_bound": num_layers / (num_layers - k) if k < num_layers else None,
        "machine": {"cpu": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads()},
    }
