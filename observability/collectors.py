"""The gauges GET /metrics computes at scrape time: RabbitMQ, queue depths, the outbox, retraining.

Documented in docs/operating.md (*Metrics*).

`observability.metrics` defines the counters and histograms that every process records and
must stay a leaf (the outbox and the consumers import it); what reads the outbox, the broker
and the retraining runs to compute gauges lives here instead, imported by the web's
`/metrics` view only (`observability.views`), which registers `SystemCollector` for each
scrape. The exporters of the workers and the relay serve counters only (`observability.exporter`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from messaging.broker_status import broker_status
from messaging.outbox import outbox_backlog, outbox_refused_count
from ml.retraining import retraining_summary  # no torch: reading runs needs none
from observability.queue_stats import SOURCE_MANAGEMENT, queue_depths

logger = logging.getLogger("observability.metrics")  # the logger these warnings always had


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
        status = broker_status()
        yield GaugeMetricFamily(
            "fitness_broker_up",
            "1 when RabbitMQ accepted an AMQP connection at its last check (made at most every "
            "BROKER_CHECK_CACHE_SECONDS by this process), else 0. Readiness does not depend on it.",
            value=int(status.reachable),
        )

    def _queues(self) -> Iterator[Metric]:
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
        up = GaugeMetricFamily("fitness_outbox_stats_up", "1 when the outbox backlog below could be read, else 0.")
        try:
            count, age = outbox_backlog()
            refused = outbox_refused_count()
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
