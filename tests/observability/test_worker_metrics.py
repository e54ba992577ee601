"""Metrics recorded by real processes reach GET /metrics: a Celery worker's pool children, the outbox.

A vhost and a worker of this module's own; the worker also serves its own exporter
(METRICS_EXPORTER_PORT), as a Kubernetes pod of a worker pool does.
"""

from __future__ import annotations

import os
import urllib.request
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from messaging.broker import publish_envelope
from messaging.events import Envelope
from messaging.models import OutboxMessage
from messaging.outbox import publish_event, publish_pending, relay_outbox
from ml.models import ModelVersion
from notifications.models import Notification
from notifications.services import device_register
from tasks.models import LaundryTask
from tests import factories
from tests.monitoring.support import TELEMETRY_URL, equipment, machine_client, reading
from tests.observability.scrape import Scrape, closed_port, free_port, scrape
from tests.probe.events import ProbeFailingEvent, ProbeRecordedEvent
from tests.probe.models import ProbeEffect
from tests.support import WorkerProcess, own_vhost, use_broker, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

RECORD = {"event_type": "ProbeRecordedEvent", "consumer": "tests.record_probe"}
FAIL = {"event_type": "ProbeFailingEvent", "consumer": "tests.fail_probe"}


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker, broker_vhost, log_dir):
    with own_vhost("metrics") as url:
        port = free_port()
        worker = WorkerProcess(
            ["task.submitted", "equipment.fault"], name="metrics", concurrency=2, log_dir=log_dir,
            METRICS_EXPORTER_PORT=str(port), TORCH_NUM_THREADS="1", PUSH_BACKEND="inbox",
            # as under `make run`: no variable in the environment, only the project package sets it
            # (after the celery command has imported prometheus-client through Flower's plugin)
            PROMETHEUS_MULTIPROC_DIR=None,
        ).start()
        yield SimpleNamespace(url=url, worker=worker, exporter=f"http://127.0.0.1:{port}/metrics")
        worker.stop()


def counter(name: str, **labels: str) -> float:
    return scrape().value(name, 0.0, **labels)


def test_a_workers_events_consumed_and_handler_latency_reach_metrics(stack, relay, route_events):
    consumed = counter("fitness_events_consumed_total", outcome="processed", **RECORD)
    duplicates = counter("fitness_events_consumed_total", outcome="duplicate", **RECORD)
    timed = counter("fitness_event_handler_duration_seconds_count", consumer=RECORD["consumer"])
    published = counter("fitness_events_published_total", event_type="ProbeRecordedEvent", via="relay")

    message = publish_event(ProbeRecordedEvent(label="metrics-worker"))  # committed: the relay publishes

    wait_for(lambda: ProbeEffect.objects.filter(event_id=message.event_id).exists(), what="the worker's effect")
    wait_for(lambda: counter("fitness_events_consumed_total", outcome="processed", **RECORD) == consumed + 1,
             what="the worker's processed event in /metrics")
    found = scrape()
    assert found.value("fitness_event_handler_duration_seconds_count", consumer=RECORD["consumer"]) == timed + 1
    assert found.value("fitness_event_handler_duration_seconds_sum", consumer=RECORD["consumer"]) > 0
    assert found.value("fitness_event_handler_duration_seconds_bucket", consumer=RECORD["consumer"],
                       le="+Inf") == timed + 1
    wait_for(lambda: counter("fitness_events_published_total", event_type="ProbeRecordedEvent",
                             via="relay") == published + 1, what="the relay's publish in /metrics")

    publish_envelope("task.submitted", message.envelope)  # delivered again: skipped, counted as such
    wait_for(lambda: counter("fitness_events_consumed_total", outcome="duplicate", **RECORD) == duplicates + 1,
             what="the duplicate in /metrics")
    assert counter("fitness_event_handler_duration_seconds_count", consumer=RECORD["consumer"]) == timed + 1

    # the worker's own exporter (one per pod in Kubernetes) serves the same counters
    with urllib.request.urlopen(stack.exporter, timeout=5) as response:
        exported = Scrape(response.read().decode())
    assert exported.value("fitness_events_consumed_total", outcome="processed", **RECORD) == consumed + 1
    assert exported.value("fitness_queue_stats_up") is None  # queue gauges: the web's /metrics only


def test_failed_attempts_and_dead_letters_are_counted_by_consumer(stack, relay, route_events, tmp_path: Path):
    failed = counter("fitness_events_failed_total", **FAIL)
    dead = counter("fitness_events_dead_lettered_total", **FAIL)

    publish_event(ProbeFailingEvent(label="metrics-permanent", attempt_log=str(tmp_path / "p"), permanent=True))
    wait_for(lambda: counter("fitness_events_dead_lettered_total", **FAIL) == dead + 1,
             what="a permanent failure counted as dead-lettered")
    assert counter("fitness_events_failed_total", **FAIL) == failed  # not retried

    publish_event(ProbeFailingEvent(label="metrics-transient", attempt_log=str(tmp_path / "t")))
    wait_for(lambda: counter("fitness_events_failed_total", **FAIL) >= failed + 1,
             what="a transient failure counted as failed (retried)")


def test_the_relay_counts_what_it_publishes_and_what_rabbitmq_refused(stack, route_events):
    def pending_row(label: str) -> OutboxMessage:
        envelope = Envelope.wrap(ProbeRecordedEvent(label=label), correlation_id=None).as_message_body()
        return OutboxMessage.objects.create(  # committed, no relay running
            event_id=envelope["event_id"], event_type="ProbeRecordedEvent", schema_version=1,
            queue="task.submitted", envelope=envelope,
        )

    labels = {"event_type": "ProbeRecordedEvent", "via": "relay"}
    published = counter("fitness_events_published_total", **labels)
    refused = counter("fitness_events_publish_failed_total", **labels)

    row = pending_row(f"metrics-relay-{uuid.uuid4().hex[:6]}")
    with use_broker(f"amqp://guest:guest@127.0.0.1:{closed_port()}//"):
        assert publish_pending().failed == 1
    assert counter("fitness_events_publish_failed_total", **labels) == refused + 1
    assert counter("fitness_events_published_total", **labels) == published

    assert relay_outbox().published == 1
    assert counter("fitness_events_published_total", **labels) == published + 1
    wait_for(lambda: ProbeEffect.objects.filter(event_id=row.event_id).exists(), what="the relayed event handled")


@pytest.fixture(scope="module")
def tiny_model(django_db_setup, django_db_blocker):
    """A tiny model version for the AI consumer, trained once for this module."""
    with django_db_blocker.unblock():
        call_command("train_model", "--per-class", "2", "--epochs", "1", stdout=open(os.devnull, "w"))
        row = ModelVersion.objects.get(is_active=True)
        return {f.attname: getattr(row, f.attname) for f in ModelVersion._meta.concrete_fields}


def test_the_ai_workers_inference_time_is_a_histogram(stack, relay, tiny_model):
    ModelVersion.objects.update_or_create(pk=tiny_model["id"], defaults=tiny_model)  # tables are emptied per test
    count = counter("fitness_inference_duration_seconds_count")
    total = counter("fitness_inference_duration_seconds_sum")
    client = factories.api_client_for(factories.helper())
    photo = SimpleUploadedFile("laundry.jpg", factories.noisy_jpeg(20_000), content_type="image/jpeg")

    accepted = client.post("/api/v1/tasks/", {"photo": photo}, format="multipart")
    assert accepted.status_code == 202

    task = wait_for(lambda: LaundryTask.objects.filter(pk=accepted.json()["id"], status="analyzed").first(),
                    timeout=90, what="the AI reading")
    wait_for(lambda: counter("fitness_inference_duration_seconds_count") == count + 1, what="the inference observed")
    observed = counter("fitness_inference_duration_seconds_sum") - total
    assert observed == pytest.approx(task.reading.inference_ms / 1000, abs=0.001)


def test_a_fault_alerts_latency_from_the_fault_to_the_push(stack, relay):
    owner = factories.user(staff=True)
    device_register(user=owner, token="metrics-owner-phone", platform="android")
    equipment(branch=factories.branch(owner=owner), kind="washer", key="metrics-washer-key")
    count = counter("fitness_alert_latency_seconds_count", severity="critical")
    within_15_s = counter("fitness_alert_latency_seconds_bucket", severity="critical", le="15.0")

    response = machine_client("metrics-washer-key").post(TELEMETRY_URL, reading(error_code="E21"), format="json")
    assert response.status_code == 202

    # PUSH_BACKEND=inbox: the alert is stored for the owner's app, and that is its delivery
    wait_for(lambda: Notification.objects.filter(recipient=owner, status="stored").exists(), what="the alert stored")
    wait_for(lambda: counter("fitness_alert_latency_seconds_count", severity="critical") == count + 1,
             what="the alert latency observed")
    assert counter("fitness_alert_latency_seconds_bucket", severity="critical", le="15.0") == within_15_s + 1
