"""Dynamic batching: many threads hand in one item each, one thread runs them in batches.

The AI worker runs its messages in a thread pool (`--pool threads`); each message's
handler decodes its photo and hands it to the process's one batcher, which runs a
forward pass on what has gathered, the way inference servers batch (Triton's dynamic
batcher, Ray Serve's `@serve.batch`):

    batcher = Batcher(read_images, max_size=8, max_wait=0.01, name="photos")
    prediction = batcher.submit(image).result(timeout=30)   # in any thread

* a batch runs as soon as `max_size` items wait, or `max_wait` seconds after the first of
  them was handed in: a photo alone is never held longer than `max_wait`;
* `run_batch(items)` returns one result per item, in order; a result that is an exception
  fails that item alone; an exception raised by `run_batch` fails every item of the batch
  (each caller gets it and retries on its own), never the batcher's thread;
* only the batch is shared: each caller keeps its own message, transaction, retries and
  acknowledgement (no batch is acknowledged or retried as a whole).

The thread is a daemon that starts on the first `submit` in the process that calls it (a
batcher made before a fork gets a thread of its own in the child) and is never stopped:
on a warm shutdown the pool waits for the handlers in hand, which wait for their batch.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


@dataclass
class _Waiting:
    item: Any
    future: Future = field(default_factory=Future)
    submitted: float = field(default_factory=time.monotonic)


class Batcher:
    """Gathers items from any number of threads and runs them, `max_size` at most, in one thread."""

    def __init__(
        self,
        run_batch: Callable[[list[Any]], Sequence[Any]],
        *,
        max_size: int,
        max_wait: float,
        name: str = "batcher",
        on_batch: Callable[[int, float], None] | None = None,
    ):
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {max_size}")
        if max_wait < 0:
            raise ValueError(f"max_wait must be 0 or more seconds, got {max_wait}")
        self.run_batch = run_batch
        self.max_size = max_size
        self.max_wait = max_wait
        self.name = name
        self.on_batch = on_batch  # (batch size, seconds the batch took), after each batch
        self._waiting: list[_Waiting] = []
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def __repr__(self) -> str:
        return f"<Batcher {self.name} max_size={self.max_size} max_wait={self.max_wait * 1000:g} ms>"

    def submit(self, item: Any) -> Future:
        """Hand in one item; its Future gets its result (or its exception) after its batch."""
        waiting = _Waiting(item)
        with self._condition:
            self._ensure_thread()
            self._waiting.append(waiting)
            self._condition.notify()
        return waiting.future

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        if self._pid != os.getpid():
            # a fork copied the parent's list and lock state, not its thread
            self._waiting = []
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._loop, name=f"{self.name}-batcher", daemon=True)
        self._thread.start()

    def _next_batch(self) -> list[_Waiting]:
        with self._condition:
            while not self._waiting:
                self._condition.wait()
            deadline = self._waiting[0].submitted + self.max_wait
            while len(self._waiting) < self.max_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._condition.wait(remaining)
            batch = self._waiting[: self.max_size]
            del self._waiting[: self.max_size]
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            try:
                self._run(batch)
            except BaseException:  # never let the thread die: the next batch needs it
                logger.exception("%s: a batch of %s failed unexpectedly", self.name, len(batch))

    def _run(self, batch: list[_Waiting]) -> None:
        started = time.perf_counter()
        try:
            results = list(self.run_batch([waiting.item for waiting in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"{self.name}: {len(results)} results for a batch of {len(batch)}")
        except BaseException as exc:  # every caller of the batch gets the exception
            for waiting in batch:
                waiting.future.set_exception(exc)
            return
        finally:
            if self.on_batch is not None:
                try:
                    self.on_batch(len(batch), time.perf_counter() - started)
                except Exception:
                    logger.exception("%s: the on_batch callback failed", self.name)
        for waiting, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                waiting.future.set_exception(result)
            else:
                waiting.future.set_result(result)
