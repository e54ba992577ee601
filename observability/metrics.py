"""The metrics of the system: the one place where metric objects are defined.

Code elsewhere calls the small functions below (`event_published`, `consumer_observed`, …),
never prometheus-client itself, so names, labels and buckets stay in this file and in the
README's table.

Counters and histograms use prometheus-client's multiprocess mode: each process (gunicorn
workers, Celery pool children, the relay) writes its values to files in
PROMETHEUS_MULTIPROC_DIR (set by observability/multiprocess.py; see below when the library came first) and
`render()` sums every file, those of processes that have exited included, so counts survive a
worker's restart. Only "live" gauges need `mark_process_dead` when a process exits; there are
none here: the gauges (queue depths, outbox backlog) are computed by `SystemCollector` at
scrape time, in the process that serves GET /metrics.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client import values as _values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

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
    "(fast_path: right after the commit; relay: the outbox relay, later; replay: a dead letter replayed).",
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
ALERT_LATENCY = Histogram(
    "fitness_alert_latency_seconds",
    "From a fault event's occurred_at (the fault opened) to its push going out (with the inbox "
    "backend: the notification stored), by severity (the seed's target: 15 s, 3 s on average).",
    ["severity"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 15, 30, 60),
)


# Label values known in advance start at 0 in every process, so that their series exist (and
# rate() and the alerting rules in deploy/prometheus/ see them) before the first event.
PUBLISHED_VIA = ("fast_path", "relay")
ALERT_SEVERITIES = ("info", "warning", "critical")  # monitoring.models.Fault.Severity


def _initialize_known_labels() -> None:
    from fitness.topology import EVENT_ROUTES

    for event_type in EVENT_ROUTES:
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


def alert_delivered(*, occurred_at: datetime, severity: str, delivered: int) -> None:
    """A fault alert went out (`delivered` pushes, or notifications stored by the inbox
    backend); an attempt that delivered nothing records nothing."""
    if delivered > 0:
        ALERT_LATENCY.labels(severity=severity).observe(max((datetime.now(UTC) - occurred_at).total_seconds(), 0.0))


# --- collected at scrape time ------------------------------------------------------------


class SystemCollector(Collector):
    """Gauges read when GET /metrics is scraped: RabbitMQ's reachability, queue depths, the outbox backlog.

    A failure to read them (RabbitMQ or PostgreSQL down) never fails the scrape: the
    `..._stats_up` gauge says 0 and the counters are still served.
    """

    def collect(self) -> Iterator[Metric]:
        yield from self._broker()
        yield from self._queues()
        yield from self._outbox()
        yield from self._retraining()

    def _broker(self) -> Iterator[Metric]:
        from messaging.broker_status import broker_status

        status = broker_status()
        yield GaugeMetricFamily(
            "fitness_broker_up",
            "1 when RabbitMQ accepted an AMQP connection at its last check (made at most every "
            "BROKER_CHECK_CACHE_SECONDS by this process), else 0. Readiness does not depend on it.",
            value=int(status.reachable),
        )

    def _queues(self) -> Iterator[Metric]:
        from observability.queue_stats import SOURCE_MANAGEMENT, queue_depths

        up = GaugeMetricFamily("fitness_queue_stats_up", "1 when the queue depths below could be read, else 0.")
        try:
            depths = queue_depths()
        except Exception as exc:  # the broker is down or misconfigured: say so, serve the rest
            logger.warning("queue depths unavailable for /metrics: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        from_api = GaugeMetricFamily(
            "fitness_queue_stats_from_management_api",
            "1 when every queue depth came from the management API (unacked counts present), "
            "0 when some came from passive declares.",
        )
        from_api.add_metric([], int(all(d.source == SOURCE_MANAGEMENT for d in depths)))
        yield from_api
        labels = ["queue", "kind"]
        ready = GaugeMetricFamily("fitness_queue_messages_ready", "Messages ready for delivery in the queue.",
                                  labels=labels)
        unacked = GaugeMetricFamily(
            "fitness_queue_messages_unacked",
            "Messages delivered to consumers and not yet acknowledged (management API only).", labels=labels,
        )
        consumers = GaugeMetricFamily("fitness_queue_consumers", "Consumers attached to the queue.", labels=labels)
        for depth in depths:
            ready.add_metric([depth.name, depth.kind], depth.ready)
            consumers.add_metric([depth.name, depth.kind], depth.consumers)
            if depth.unacked is not None:
                unacked.add_metric([depth.name, depth.kind], depth.unacked)
        yield ready
        yield unacked
        yield consumers

    def _outbox(self) -> Iterator[Metric]:
        from messaging.models import OutboxMessage
        from messaging.outbox import outbox_backlog

        up = GaugeMetricFamily("fitness_outbox_stats_up", "1 when the outbox backlog below could be read, else 0.")
        try:
            count, age = outbox_backlog()
            refused = OutboxMessage.objects.failing().count()
        except Exception as exc:  # PostgreSQL is down
            logger.warning("outbox backlog unavailable for /metrics: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily(
            "fitness_outbox_unpublished_messages", "Outbox events committed and not yet published.", value=count
        )
        yield GaugeMetricFamily(
            "fitness_outbox_oldest_unpublished_age_seconds",
            "Age of the oldest unpublished outbox event (0 when none waits).",
            value=age.total_seconds() if age is not None else 0.0,
        )
        yield GaugeMetricFamily(
            "fitness_outbox_refused_messages",
            "Unpublished outbox events RabbitMQ refused (unroutable, nacked), each backing off alone until "
            "its next attempt; `manage.py outbox list` shows them with their errors.",
            value=refused,
        )


    def _retraining(self) -> Iterator[Metric]:
        from ml.retraining import retraining_summary  # no torch: reading runs needs none

        try:
            counts, last = retraining_summary()
        except Exception as exc:  # PostgreSQL is down: fitness_outbox_stats_up says so already
            logger.warning("retraining runs unavailable for /metrics: %s", exc)
            return
        runs = GaugeMetricFamily("fitness_retraining_runs", "Retraining runs by status (every status, 0 included).",
                                 labels=["status"])
        for status, count in counts.items():
            runs.add_metric([status], count)
        yield runs
        yield GaugeMetricFamily(
            "fitness_retraining_last_run_failed",
            "1 when the last retraining run that finished failed, else 0 (also before any run).",
            value=int(last == "failed"),
        )


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


def render(accept: str = "") -> tuple[bytes, str]:
    """GET /metrics: every process's counters and histograms plus the scrape-time gauges.

    In the format the scraper's Accept header asks for (Prometheus text 0.0.4 by default,
    OpenMetrics when asked), as prometheus-client's own exporters negotiate it.
    """
    registry = process_registry()
    registry.register(SystemCollector())
    encode, content_type = choose_encoder(accept)
    return encode(registry), content_type
