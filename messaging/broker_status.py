"""Is RabbitMQ reachable? A cheap, bounded, cached answer for reports, never for readiness.

    status = broker_status()
    status.reachable, status.detail  # True, "ok"  /  False, "unreachable: timed out"

The web's readiness depends on PostgreSQL alone: with RabbitMQ down the outbox keeps
accepting work and the relay publishes it later, so taking web pods out of service would
only turn a delay into an outage. The broker's state is still reported: in /readyz's body,
in /metrics (`fitness_broker_up`) and on the operations page. Those are scraped and probed
every few seconds by every web pod, so the check is one AMQP connection attempt with a short
timeout (BROKER_CHECK_TIMEOUT_SECONDS, for the TCP connect and again for the handshake),
made by a background thread at most once per BROKER_CHECK_CACHE_SECONDS per process.
Callers get the last answer at once; only the very first call of a process (or the first
after the broker URL changed) waits, and at most for that one attempt.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings
from kombu import Connection

from messaging.broker import connect_once


@dataclass(frozen=True)
class BrokerStatus:
    reachable: bool
    detail: str  # "ok", or "unreachable: <why>"
    url: str = field(repr=False)
    checked_at: datetime
    _checked_monotonic: float = field(repr=False, compare=False)

    def age_seconds(self) -> float:
        return max(time.monotonic() - self._checked_monotonic, 0.0)


_lock = threading.Lock()
_last: BrokerStatus | None = None
_running: dict[str, threading.Thread] = {}


def _check(url: str) -> BrokerStatus:
    timeout = settings.BROKER_CHECK_TIMEOUT_SECONDS
    try:
        with Connection(url, connect_timeout=timeout) as broker:
            connect_once(broker)
    except Exception as exc:  # whatever it is, the broker cannot be used right now
        detail = f"unreachable: {exc.__class__.__name__}: {exc}".strip()
        reachable = False
    else:
        detail, reachable = "ok", True
    return BrokerStatus(reachable, detail, url, datetime.now(UTC), time.monotonic())


def _refresh(url: str) -> None:
    global _last
    status = _check(url)
    with _lock:
        if _last is None or _last.url != url or _last.checked_at <= status.checked_at:
            _last = status
        _running.pop(url, None)


def broker_status() -> BrokerStatus:
    """RabbitMQ's state as last checked (at most BROKER_CHECK_CACHE_SECONDS old, or being refreshed)."""
    url = settings.CELERY_BROKER_URL
    with _lock:
        last = _last if _last is not None and _last.url == url else None
        if last is not None and last.age_seconds() < settings.BROKER_CHECK_CACHE_SECONDS:
            return last
        thread = _running.get(url)
        if thread is None:
            thread = threading.Thread(target=_refresh, args=(url,), name="broker-status", daemon=True)
            _running[url] = thread
            thread.start()
    if last is not None:
        return last  # stale by a few seconds while the refresh runs: a report, not a decision
    # nothing known yet for this URL: wait for the one attempt (bounded by its timeouts)
    thread.join(timeout=2 * settings.BROKER_CHECK_TIMEOUT_SECONDS + 1.0)
    with _lock:
        if _last is not None and _last.url == url:
            return _last
    return BrokerStatus(False, "unknown: the first check has not finished", url, datetime.now(UTC), 0.0)
