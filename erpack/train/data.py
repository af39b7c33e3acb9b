"""Batches from the cache: length-grouped, shuffled by seed, read and decoded in a background thread.

`batch_plan` groups documents of similar length (little padding) and shuffles deterministically:
each epoch the documents are permuted by `seed + epoch`, cut into pools of `pool` batches, sorted by
length inside a pool, cut into batches, and the batches permuted again. The same plan (it needs only
the token counts) drives the text baseline, so both see the same documents in the same batches.

`Prefetcher` runs a producer thread that reads each batch's records, decodes them (zstd and the
dequantizers mostly release the GIL) and pads them into `(B, T, H)` float32 plus a `(B, T)` mask,
ahead of the training loop, through a bounded queue: memory holds at most `depth` batches and the
model does not wait on the disk. `wait_seconds` is how long the consumer still waited.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from erpack.batching import length_batches, pad_arrays


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


class Prefetcher:
    """Iterate `(rows, batch)` with batch = make(rows), made `depth` batches ahead in a thread.

    An exception in the producer is raised in the consumer; leaving the loop early (break, error)
    stops the producer. `pin=True` pins host memory so a CUDA copy can be non-blocking.
    """

    _DONE = object()

    def __init__(self, plan: list[list[int]], make: Callable[[list[int]], object], depth: int = 4, pin: bool = False):
        self.plan = plan
        self.make = make
        self.depth = max(1, depth)
        self.pin = pin
        self.wait_seconds = 0.0
        self.produce_seconds = 0.0

    def __len__(self) -> int:
        return len(self.plan)

    def _produce(self, q: queue.Queue, stop: threading.Event) -> None:
        try:
            for rows in self.plan:
                t = time.perf_counter()
                batch = self.make(rows)
                if self.pin:
                    batch = tuple(x.pin_memory() if torch.is_tensor(x) else x for x in batch)
                self.produce_seconds += time.perf_counter() - t
                while not stop.is_set():
                    try:
                        q.put((rows, batch), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(self._DONE)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)

    def __iter__(self) -> Iterator[tuple[list[int], object]]:
        q: queue.Queue = queue.Queue(maxsize=self.depth)
        stop = threading.Event()
        thread = threading.Thread(target=self._produce, args=(q, stop), daemon=True, name="erpack-prefetch")
        thread.start()
        try:
            while True:
                t = time.perf_counter()
                item = q.get()
                self.wait_seconds += time.perf_counter() - t
                if item is self._DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while thread.is_alive():  # drain so a blocked producer can finish
                try:
                    q.get_nowait()
                except queue.Empty:
                    thread.join(timeout=0.05)


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
