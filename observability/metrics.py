"""The metrics of the system: the one place where metric objects are defined.

Code elsewhere calls the small functions below (`event_published`, `consumer_observed`, …),
never prometheus-client itself, so names, labels and buckets stay in this file and in the
Metrics table of docs/operating.md.

Counters and histograms use prometheus-client's multiprocess mode: each process (gunicorn
workers, Celery pool children, the relay) writes its values to files in
PROMETHEUS_MULTIPROC_DIR (set by observability/multiprocess.py; see below when the library came first) and
`render()` sums every file, those of processes that have exited included, so counts survive a
worker's restart. Only "live" gauges need `mark_process_dead` when a process exits; there are
none here: the gauges (queue depths, outbox backlog) are computed by
`observability.collectors.SystemCollector` at scrape time, in the process that serves GET /metrics.

A leaf: every hot path imports this module, so it imports no project module that could
import it back (only `fitness.topology`, which imports nothing of the project). What reads
the outbox, the broker or the retraining runs lives in `observability.collectors`.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client import values as _values
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from fitness.topology import EVENT_TYPES

# prometheus-client picks its value class (in-process or multiprocess files) when it is first
# imported, from PROMETHEUS_MULTIPROC_DIR. The project package sets that variable first thing
# (observability/multiprocess.py), but the `celery` command imports Flower's command plugin (an
# entry point of every celery CLI run), and with it prometheus-client, before it loads the app: every
# worker and beat would then keep its counts in memory, invisible to GET /metrics. The
# metrics below take the value class when they are created, so choosing it again here,
# once the variable is set, puts them in the shared files.
if _values.ValueClass is _values.MutexValue and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _values.ValueClass = _values.get_value_class()

# --- defined here, recorded where things happen -----------------------------------------

EVENTS_PUBLISHED = Counter(
    "fitness_events_published_total",
    "Events RabbitMQ confirmed, by event type and by who published them "
    "(relay: the outbox relay, the one publisher of committed events; replay: a dead letter replayed).",
    ["event_type", "via"],
)
EVENTS_PUBLISH_FAILED = Counter(
    "fitness_events_publish_failed_total",
    "Publishes of outbox events that RabbitMQ did not take (the row stays pending for the relay).",
    ["event_type", "via"],
)
EVENTS_CONSUMED = Counter(
    "fitness_events_consumed_total",
    "Events a consumer finished: outcome=processed (its handler committed) or duplicate "
    "(already processed, skipped).",
    ["event_type", "consumer", "outcome"],
)
EVENTS_FAILED = Counter(
    "fitness_events_failed_total",
    "Consumer attempts that raised and were retried by their queue's retry policy (fitness/topology.py).",
    ["event_type", "consumer"],
)
EVENTS_DEAD_LETTERED = Counter(
    "fitness_events_dead_lettered_total",
    "Events a consumer gave up on (retries exhausted, a permanent error, an invalid message): "
    "rejected to <queue>.dlq. Messages the delivery limit dead-letters (their worker died) are "
    "counted by fitness_dead_letters_archived_total{reason=\"delivery_limit\"}.",
    ["event_type", "consumer"],
)
DEAD_LETTERS_ARCHIVED = Counter(
    "fitness_dead_letters_archived_total",
    "Deaths of events in a work queue, once each, as the dead-letter archiver recorded them, by "
    "RabbitMQ's reason: rejected (a consumer gave up) or delivery_limit (the worker handling it "
    "died every time). Unlike fitness_events_dead_lettered_total, it also sees the deaths no "
    "consumer lived to report.",
    ["queue", "event_type", "reason"],
)
HANDLER_DURATION = Histogram(
    "fitness_event_handler_duration_seconds",
    "Time a consumer took for an event it processed: parsing, its start hook, the handler "
    "and the commit.",
    ["consumer"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
)
INFERENCE_DURATION = Histogram(
    "fitness_inference_duration_seconds",
    "The AI model's forward pass on one photo (the inference time stored with each reading).",
    buckets=(0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5),
)
INFERENCE_BATCH_SIZE = Histogram(
    "fitness_inference_batch_size",
    "Photos per forward pass of an AI worker's batcher (at most ML_BATCH_MAX).",
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64),
)
ALERT_LATENCY = Histogram(
    "fitness_alert_latency_seconds",
    "From a fault event's occurred_at (the fault opened) to its push going out (with the inbox "
    "backend: the notification stored), by severity (the seed's target: 15 s, 3 s on average).",
    ["severity"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 15, 30, 60),
)


# Label values known in advance start at 0 in every process, so that their series exist (and
# rate() and the alerting rules in deploy/prometheus/ see them) before the first event.
PUBLISHED_VIA = ("relay",)
ALERT_SEVERITIES = ("info", "warning", "critical")  # monitoring.models.Fault.Severity


def _initialize_known_labels() -> None:
    for event_type in EVENT_TYPES:
        for via in PUBLISHED_VIA:
            EVENTS_PUBLISHED.labels(event_type=event_type, via=via)
            EVENTS_PUBLISH_FAILED.labels(event_type=event_type, via=via)
    for severity in ALERT_SEVERITIES:
        ALERT_LATENCY.labels(severity=severity)


_initialize_known_labels()


def event_published(event_type: str, *, via: str) -> None:
    EVENTS_PUBLISHED.labels(event_type=event_type, via=via).inc()


def event_publish_failed(event_type: str, *, via: str) -> None:
    EVENTS_PUBLISH_FAILED.labels(event_type=event_type, via=via).inc()


def event_failed(event_type: str, consumer: str) -> None:
    EVENTS_FAILED.labels(event_type=event_type, consumer=consumer).inc()


def event_dead_lettered(event_type: str, consumer: str) -> None:
    EVENTS_DEAD_LETTERED.labels(event_type=event_type, consumer=consumer).inc()


def dead_letter_archived(queue: str, event_type: str, reason: str) -> None:
    DEAD_LETTERS_ARCHIVED.labels(queue=queue, event_type=event_type, reason=reason).inc()


def consumer_observed(event_type: str, consumer: str) -> Callable[[Callable[..., str]], Callable[..., str]]:
    """Wrap a consumer's task body: count what it returns ("processed", "duplicate") and
    time the processed ones. Exceptions pass through; the task's retry and failure hooks
    count them (`event_failed`, `event_dead_lettered`)."""

    def decorator(run: Callable[..., str]) -> Callable[..., str]:
        @functools.wraps(run)
        def observed(*args: Any, **kwargs: Any) -> str:
            started = time.perf_counter()
            outcome = run(*args, **kwargs)
            if outcome == "processed":
                HANDLER_DURATION.labels(consumer=consumer).observe(time.perf_counter() - started)
            EVENTS_CONSUMED.labels(event_type=event_type, consumer=consumer, outcome=str(outcome)).inc()
            return outcome

        return observed

    return decorator


def inference_observed(inference_ms: float) -> None:
    INFERENCE_DURATION.observe(max(inference_ms, 0.0) / 1000)


def inference_batch_observed(size: int, seconds: float) -> None:
    INFERENCE_BATCH_SIZE.observe(size)


def alert_delivered(*, occurred_at: datetime, severity: str, delivered: int) -> None:
    """A fault alert went out (`delivered` pushes, or notifications stored by the inbox
    backend); an attempt that delivered nothing records nothing."""
    if delivered > 0:
        ALERT_LATENCY.labels(severity=severity).observe(max((datetime.now(UTC) - occurred_at).total_seconds(), 0.0))


class _ThisProcess(Collector):
    # Without multiprocess mode (prometheus-client was imported before the variable was set)
    # this process's own values are all there is.
    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def multiprocess_mode() -> bool:
    return _values.ValueClass is not _values.MutexValue


def process_registry() -> CollectorRegistry:
    """A registry with the counters and histograms of every process on this host (pod)."""
    registry = CollectorRegistry()
    if multiprocess_mode():
        MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    return registry


def render(accept: str = "", *, collectors: Iterable[Collector] = ()) -> tuple[bytes, str]:
    """Every process's counters and histograms plus `collectors` (GET /metrics passes the
    scrape-time gauges of `observability.collectors`).

    In the format the scraper's Accept header asks for (Prometheus text 0.0.4 by default,
    OpenMetrics when asked), as prometheus-client's own exporters negotiate it.
    """
    registry = process_registry()
    for collector in collectors:
        registry.register(collector)
    encode, content_type = choose_encoder(accept)
    return encode(registry), content_type
