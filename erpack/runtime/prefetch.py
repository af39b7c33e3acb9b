"""Batches made ahead in a background thread, through a bounded queue.

Reading and decoding cached records (zstd and the dequantizers mostly release the GIL), or padding
token ids, runs in a producer thread while the model computes the previous batch: memory holds at
most `depth` batches and the model does not wait on the disk. Training, evaluation, the text
baseline and `erpack predict` all iterate through this one class.

    pf = Prefetcher(plan, lambda rows: reader.get_batch([ids[i] for i in rows]), depth=4)
    for rows, (hidden, mask) in pf: ...
    pf.wait_seconds                        # how long the consumer still waited on the producer
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator


class Prefetcher:
    """Iterate `(rows, batch)` with batch = make(rows), made `depth` batches ahead in a thread.

    An exception in the producer is raised in the consumer; leaving the loop early (break, error)
    stops the producer. `pin=True` pins host memory (tensors of a tuple batch) so a CUDA copy can
    be non-blocking. `wait_seconds`: consumer time spent waiting; `produce_seconds`: time in make().
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

    def _made(self, rows: list[int]):
        t = time.perf_counter()
        batch = self.make(rows)
        if self.pin:
            import torch

            batch = tuple(x.pin_memory() if torch.is_tensor(x) else x for x in batch)
        self.produce_seconds += time.perf_counter() - t
        return batch

    def _produce(self, q: queue.Queue, stop: threading.Event) -> None:
        try:
            for rows in self.plan:
                batch = self._made(rows)
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
