"""GET /metrics: the Prometheus text format, its token, the outbox gauges, a broker that is down."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from messaging.models import OutboxMessage
from messaging.outbox import publish_event
from observability import metrics
from observability.queue_stats import BrokerUnreachable, queue_depths, topology_queues
from tests.observability.scrape import closed_port, scrape
from tests.probe.events import ProbeRecordedEvent
from tests.support import ROOT, use_broker

pytestmark = pytest.mark.django_db

QUEUE_GAUGES = ["fitness_queue_messages_ready", "fitness_queue_messages_unacked", "fitness_queue_consumers"]


def record_one_of_each() -> None:
    """Record every counter and histogram once, under labels no other test uses."""
    metrics.event_published("MetricsFormatEvent", via="relay")
    metrics.event_publish_failed("MetricsFormatEvent", via="relay")
    metrics.event_failed("MetricsFormatEvent", "tests.metrics_format")
    metrics.event_dead_lettered("MetricsFormatEvent", "tests.metrics_format")
    metrics.consumer_observed("MetricsFormatEvent", "tests.metrics_format")(lambda: "processed")()
    metrics.inference_observed(21.5)
    metrics.alert_delivered(occurred_at=datetime.now(UTC) - timedelta(seconds=1), severity="format-test", delivered=1)


def test_metrics_parse_as_prometheus_text_with_every_family_typed():
    record_one_of_each()

    found = scrape()

    types = {name: family.type for name, family in found.families.items()}
    assert {name: types.get(name) for name in [
        "fitness_events_published", "fitness_events_publish_failed", "fitness_events_consumed",
        "fitness_events_failed", "fitness_events_dead_lettered",
    ]} == dict.fromkeys([
        "fitness_events_published", "fitness_events_publish_failed", "fitness_events_consumed",
        "fitness_events_failed", "fitness_events_dead_lettered",
    ], "counter")
    for name in ["fitness_event_handler_duration_seconds", "fitness_inference_duration_seconds",
                 "fitness_alert_latency_seconds"]:
        assert types.get(name) == "histogram", name
    for name in [*QUEUE_GAUGES, "fitness_queue_stats_up", "fitness_queue_stats_from_management_api",
                 "fitness_outbox_stats_up", "fitness_outbox_unpublished_messages",
                 "fitness_outbox_oldest_unpublished_age_seconds", "fitness_outbox_refused_messages",
                 "fitness_broker_up"]:
        assert types.get(name) == "gauge", name

    labels = {"event_type": "MetricsFormatEvent", "consumer": "tests.metrics_format"}
    assert found.value("fitness_events_published_total", event_type="MetricsFormatEvent", via="relay") >= 1
    assert found.value("fitness_events_consumed_total", outcome="processed", **labels) >= 1
    assert found.value("fitness_events_failed_total", **labels) >= 1
    assert found.value("fitness_events_dead_lettered_total", **labels) >= 1
    assert found.value("fitness_event_handler_duration_seconds_count", consumer="tests.metrics_format") >= 1
    assert found.value("fitness_inference_duration_seconds_count") >= 1
    assert found.value("fitness_alert_latency_seconds_bucket", severity="format-test", le="0.5") == 0
    assert found.value("fitness_alert_latency_seconds_bucket", severity="format-test", le="2.0") >= 1

    # every queue of the topology, with its kind; the DLQs are there too
    assert found.value("fitness_broker_up") == 1
    assert found.value("fitness_queue_stats_up") == 1
    ready = found.labelled("fitness_queue_messages_ready")
    assert {dict(labels)["queue"]: dict(labels)["kind"] for labels in ready} == dict(topology_queues())
    assert "dead-letter" in {dict(labels)["kind"] for labels in ready}


def test_the_docs_document_every_metric():
    record_one_of_each()
    names = set(scrape().families)
    operating = (ROOT / "docs" / "operating.md").read_text()
    documented = set(re.findall(r"`(fitness_[a-z_]+?)(?:_total)?`", operating))
    ours = {name for name in names if name.startswith("fitness_")}
    assert ours - documented == set(), "add these to the Metrics section of docs/operating.md"


def test_the_outbox_backlog_and_its_oldest_age(route_events):
    assert scrape().value("fitness_outbox_unpublished_messages") == 0
    assert scrape().value("fitness_outbox_oldest_unpublished_age_seconds") == 0

    # In this test's transaction nothing commits, so no relay could see them.
    old = publish_event(ProbeRecordedEvent(label="backlog-old"))
    publish_event(ProbeRecordedEvent(label="backlog-new"))
    OutboxMessage.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(seconds=120))

    found = scrape()
    assert found.value("fitness_outbox_stats_up") == 1
    assert found.value("fitness_outbox_unpublished_messages") == 2
    assert 120 <= found.value("fitness_outbox_oldest_unpublished_age_seconds") < 180

    OutboxMessage.objects.filter(pk=old.pk).update(published_at=timezone.now())
    found = scrape()
    assert found.value("fitness_outbox_unpublished_messages") == 1
    assert found.value("fitness_outbox_oldest_unpublished_age_seconds") < 60


@override_settings(METRICS_TOKEN="s3cret-scrape-token")
def test_metrics_token_is_required_when_set():
    client = Client()
    for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer wrong"}, {"HTTP_AUTHORIZATION": "Basic czNjcmV0"},
                    {"HTTP_AUTHORIZATION": "s3cret-scrape-token"}):
        response = client.get("/metrics", **headers)
        assert response.status_code == 401, headers
        assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert b"Authorization: Bearer" in response.content
        assert b"fitness_" not in response.content

    found = scrape(client, HTTP_AUTHORIZATION="Bearer s3cret-scrape-token")
    assert found.value("fitness_queue_stats_up") == 1


def test_metrics_take_only_get_and_head():
    client = Client()
    assert client.post("/metrics").status_code == 405
    assert client.head("/metrics").status_code == 200


def test_a_broker_that_is_down_leaves_metrics_up_with_the_queue_gauge_at_0():
    record_one_of_each()
    port = closed_port()
    with use_broker(f"amqp://guest:guest@127.0.0.1:{port}//"), \
            override_settings(RABBITMQ_MANAGEMENT_URL=f"http://127.0.0.1:{port}"):
        with pytest.raises(BrokerUnreachable, match=f"127.0.0.1:{port}"):
            queue_depths()
        found = scrape()

    assert found.value("fitness_queue_stats_up") == 0
    assert found.value("fitness_broker_up") == 0
    for name in QUEUE_GAUGES:
        assert found.labelled(name) == {}, name
    # the rest is still served: the outbox gauges and every process's counters
    assert found.value("fitness_outbox_stats_up") == 1
    assert found.value("fitness_events_published_total", event_type="MetricsFormatEvent", via="relay") >= 1



def test_retraining_runs_by_status_and_whether_the_last_one_failed():
    from ml.models import RetrainingRun

    found = scrape()
    assert set(dict(found.labelled("fitness_retraining_runs"))) == {
        frozenset({("status", status)}) for status in RetrainingRun.Status.values
    }
    assert found.value("fitness_retraining_last_run_failed") == 0

    now = timezone.now()
    RetrainingRun.objects.create(trigger=RetrainingRun.Trigger.COMMAND, status=RetrainingRun.Status.PROMOTED,
                                 finished_at=now - timedelta(hours=2))
    RetrainingRun.objects.create(trigger=RetrainingRun.Trigger.COMMAND, status=RetrainingRun.Status.FAILED,
                                 finished_at=now - timedelta(hours=1))
    RetrainingRun.objects.create(trigger=RetrainingRun.Trigger.COMMAND)  # queued: not finished
    found = scrape()
    assert found.value("fitness_retraining_runs", status="failed") == 1
    assert found.value("fitness_retraining_runs", status="queued") == 1
    assert found.value("fitness_retraining_last_run_failed") == 1

    RetrainingRun.objects.create(trigger=RetrainingRun.Trigger.COMMAND, status=RetrainingRun.Status.REJECTED,
                                 finished_at=now)
    assert scrape().value("fitness_retraining_last_run_failed") == 0
