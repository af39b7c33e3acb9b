"""Dynamic micro-batching for the service: requests wait in a bounded queue, one worker thread takes
them in batches (up to `max_batch` items, or what arrived within `max_wait` of the first) and runs
each batch at once. Past `max_queue` waiting requests, `submit` refuses at once (the service answers
429 with Retry-After): the queue never grows without bound.

    b = Batcher(run_batch, max_batch=64, max_wait=0.005, max_queue=64)   # run_batch(list[Job]) -> None
    b.start(); b.submit(job)        # raises Overloaded when full, Closed after close()
    b.close()                       # the jobs queued before it are run, then the thread ends

One thread runs every batch, so the onnxruntime sessions and the cache reader are used by one thread
only; onnxruntime itself spreads each batch over the cores. No torch, no web framework here.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from erpack.errors import ErpackError


class Overloaded(ErpackError):
    """The queue is full: try again later."""


class Closed(ErpackError):
    """The batcher is shutting down."""


@dataclass
class Job:
    """One request's work: `size` items; `done(result)` or `fail(exc)` is called once, from the worker."""

    size: int
    payload: object
    done: Callable[[object], None]
    fail: Callable[[BaseException], None]
    queued_at: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(self, run: Callable[[list[Job]], None], max_batch: int = 64, max_wait: float = 0.005,
                 max_queue: int = 64, on_batch: Callable[[list[Job], float], None] | None = None):
        if max_batch < 1 or max_queue < 1 or max_wait < 0:
            raise ErpackError(f"max_batch and max_queue must be at least 1 and max_wait at least 0; got "
                              f"{max_batch}, {max_queue}, {max_wait}")
        self.run, self.on_batch = run, on_batch
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait, max_queue
        self._queue: deque[Job] = deque()
        self._cv = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="erpack-batcher", daemon=True)

    def start(self) -> Batcher:
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._closing

    @property
    def depth(self) -> int:
        return len(self._queue)

    def submit(self, job: Job) -> None:
        with self._cv:
            if self._closing:
                raise Closed("the service is shutting down")
            if len(self._queue) >= self.max_queue:
                raise Overloaded(f"{len(self._queue)} requests are queued (at most {self.max_queue})")
            self._queue.append(job)
            self._cv.notify()

    def _take(self) -> list[Job] | None:
        """The next batch: the first job, then the ones that arrive until max_batch items or max_wait."""
        with self._cv:
            while not self._queue:
                if self._closing:
                    return None
                self._cv.wait()
            batch = [self._queue.popleft()]
            items = batch[0].size
            deadline = time.perf_counter() + self.max_wait
            while items < self.max_batch:
                if self._queue:
                    if items + self._queue[0].size > self.max_batch:
                        break
                    batch.append(self._queue.popleft())
                    items += batch[-1].size
                    continue
                left = deadline - time.perf_counter()
                if left <= 0 or self._closing:
                    break
                self._cv.wait(left)
            return batch

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            t0 = time.perf_counter()
            try:
                self.run(batch)
            except BaseException as exc:  # noqa: BLE001  (every job hears of it; the worker keeps going)
                for job in batch:
                    job.fail(exc)
            if self.on_batch is not None:
                self.on_batch(batch, time.perf_counter() - t0)

    def close(self, timeout: float | None = 60) -> None:
        """Refuse new jobs, run the queued ones, end the thread."""
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
