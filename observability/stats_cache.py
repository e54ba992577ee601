"""At most one expensive read per STATS_CACHE_SECONDS in a process, however often it is asked for.

GET /metrics reads the queue depths (RabbitMQ's management API, with the broker's administrator
credentials) and the outbox backlog at every scrape; several Prometheus servers, a dashboard or a
flood of requests would repeat those reads for figures that are seconds old anyway. Decorated
with `cached_for_stats`, a function runs once per STATS_CACHE_SECONDS in each process (each
gunicorn worker), and every call meanwhile gets its answer, its exception included (a broker that
does not answer costs one timeout per period, not one per scrape). Concurrent callers wait for
the one read in progress instead of starting their own. STATS_CACHE_SECONDS=0: no cache.

A leaf: it imports nothing of the project, so the outbox and the queue statistics can use it.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings

T = TypeVar("T")


def cached_for_stats(read: Callable[[], T]) -> Callable[[], T]:
    """`read()` at most once per STATS_CACHE_SECONDS in this process; `.cache_clear()` forgets the answer."""
    lock = threading.Lock()
    last: dict = {}  # "at" (monotonic), and "value" or "error"

    @functools.wraps(read)
    def cached() -> T:
        period = settings.STATS_CACHE_SECONDS
        if period <= 0:
            return read()
        with lock:
            if not last or time.monotonic() - last["at"] >= period:
                last.clear()
                try:
                    last["value"] = read()
                except Exception as exc:  # the answer, too, until the period is over
                    last["error"] = exc
                last["at"] = time.monotonic()
            if "error" in last:
                raise last["error"]
            return last["value"]

    cached.cache_clear = last.clear  # type: ignore[attr-defined]
    return cached
