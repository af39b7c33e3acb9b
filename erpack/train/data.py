"""Batches from the cache: length-grouped, shuffled by seed, read and decoded in a background thread.

`batch_plan` groups documents of similar length (little padding) and shuffles deterministically:
each epoch the documents are permuted by `seed + epoch`, cut into pools of `pool` batches, sorted by
length inside a pool, cut into batches, and the batches permuted again. The same plan (it needs only
the token counts) drives the text baseline, so both see the same documents in the same batches.

`cache_source` reads each batch's records, decodes them and pads them into `(B, T, H)` float32 plus
a `(B, T)` mask ahead of the training loop, in erpack.runtime.prefetch's background thread: memory
holds at most `depth` batches and the model does not wait on the disk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from erpack.batching import length_batches, pad_arrays
from erpack.runtime.prefetch import Prefetcher


def batch_plan(lengths: Sequence[int], batch_size: int, seed: int | None = None, epoch: int = 0,
               pool: int = 50, max_tokens: int | None = None) -> list[list[int]]:
    """Indices into `lengths` in batches of similar length; `seed=None` gives a fixed, sorted plan."""

    n = len(lengths)
    if seed is None:
        return length_batches(lengths, batch_size, max_tokens)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n)
    batches: list[list[int]] = []
    step = batch_size * pool
    for start in range(0, n, step):
        chunk = order[start:start + step]
        for b in length_batches([lengths[i] for i in chunk], batch_size, max_tokens):
            batches.append([int(chunk[j]) for j in b])
    return [batches[i] for i in rng.permutation(len(batches))]


def pad_batch(arrays: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-document (T_i, H) float32 arrays -> hidden (B, T, H) float32 and mask (B, T) int64."""
    return as_tensors(pad_arrays(arrays))


def as_tensors(batch: tuple[np.ndarray, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """(hidden, mask) numpy arrays as tensors sharing their memory."""
    hidden, mask = batch
    return torch.from_numpy(hidden), torch.from_numpy(mask)


@dataclass
class Source:
    """One split's batches: `lengths` per example and `batches(plan)` -> iterable of (rows, inputs)."""

    lengths: list[int]
    batches: Callable[[list[list[int]]], Iterator]
    wait: Callable[[], float] = lambda: 0.0  # seconds the model waited on the source so far


def cache_source(reader, ids: Sequence[str], lengths: list[int], depth: int = 4, pin: bool = False) -> Source:
    """A split's batches of decoded records, prefetched: (rows, (hidden (B,T,H), mask (B,T)))."""
    state = {"wait": 0.0}

    def batches(plan):
        pf = Prefetcher(plan, lambda rows: as_tensors(reader.get_batch([ids[i] for i in rows])), depth=depth, pin=pin)
        try:
            yield from pf
        finally:
            state["wait"] += pf.wait_seconds

    return Source(lengths, batches, lambda: state["wait"])


def cache_lengths(reader, ids: Sequence[str]) -> list[int]:
    """Token count of each document, from the shard indexes (no record is read)."""
    return [reader.info(i)["tokens"] for i in ids]
