"""Retention through the real processes: `celery beat` with its schedule in PostgreSQL, the
prune job on a real worker, and `manage.py dlq replay` refusing a dead letter past the window."""

import io
import sys
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from messaging.broker import publish_envelope
from messaging.errors import BrokerUnavailable
from messaging.events import Envelope
from messaging.models import DeadLetter, ProcessedEvent
from tests.probe.events import ProbeRecordedEvent
from tests.support import (
    ChildProcess,
    WorkerProcess,
    broker_connection,
    dead_letter_archiver,
    own_vhost,
    queue_depth,
    wait_for,
)

pytestmark = pytest.mark.django_db(transaction=True)

BEAT_ARGV = [
    sys.executable, "-m", "celery", "-A", "fitness", "beat",
    "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler", "--loglevel", "INFO",
]


# The shared broker can stall for a minute while other runs delete their vhosts: be patient.
PATIENT = {"CELERY_BROKER_CONNECTION_TIMEOUT": "30"}


@pytest.fixture(scope="module")
def vhost(django_db_setup, django_db_blocker, broker_vhost):
    """A vhost for this module only, so its queue counts are exact."""
    with own_vhost("retention") as url:
        yield url


@pytest.fixture
def patient_broker(monkeypatch):
    from fitness.celery import app

    monkeypatch.setitem(app.conf, "broker_connection_timeout", 30.0)


def test_beat_keeps_its_schedule_in_postgresql_and_the_prune_job_runs_on_the_mlops_pool(vhost, log_dir):
    old = ProcessedEvent.objects.create(consumer="c", event_id=uuid.uuid4(), event_type="E")
    ProcessedEvent.objects.filter(pk=old.pk).update(processed_at=timezone.now() - timedelta(days=60))
    fresh = ProcessedEvent.objects.create(consumer="c", event_id=uuid.uuid4(), event_type="E")
    worker = WorkerProcess(["mlops"], name="retention-mlops", log_dir=log_dir, **PATIENT)
    # the Procfile's beat line, with a prune every 3 s instead of every hour
    beat = ChildProcess(BEAT_ARGV, name="beat-retention", log_dir=log_dir, ready="beat: Starting",
                        RETENTION_PRUNE_INTERVAL_MINUTES="0.05", **PATIENT)
    try:
        worker.start(timeout=240)
        beat.start(timeout=240)
        wait_for(lambda: not ProcessedEvent.objects.filter(pk=old.pk).exists(), timeout=120,
                 what="beat to send retention.prune and the mlops worker to prune the old record")
        assert ProcessedEvent.objects.filter(pk=fresh.pk).exists()
    finally:
        beat.stop()  # a warm stop writes the schedule's state (last runs) to PostgreSQL
        worker.stop()

    tasks = {task.name: task for task in PeriodicTask.objects.select_related("interval")}
    assert {"retrain-on-schedule", "retrain-sweep", "retention-prune"} <= set(tasks)
    sweep = tasks["retrain-sweep"]
    assert (sweep.task, sweep.interval.every, sweep.interval.period, sweep.expire_seconds) == (
        "ml.retrain", 300, "seconds", 300)
    assert (tasks["retrain-on-schedule"].interval.every, tasks["retrain-on-schedule"].expire_seconds) == (
        86400, 86400)
    prune = tasks["retention-prune"]
    # what a restart of beat starts from: its last run, kept in PostgreSQL (not on an emptyDir)
    assert prune.task == "retention.prune" and prune.total_run_count >= 1
    assert prune.last_run_at > timezone.now() - timedelta(minutes=5)
    assert "pruned 1 processed-events rows" in worker.log()


def envelope(*, occurred_days_ago: float) -> dict:
    body = Envelope.wrap(ProbeRecordedEvent(label=f"r-{uuid.uuid4()}"), correlation_id=None).as_message_body()
    body["occurred_at"] = (timezone.now() - timedelta(days=occurred_days_ago)).isoformat()
    return body


def dead_letter(body: dict) -> None:
    """Publish `body` to task.submitted and reject it there: RabbitMQ dead-letters it to the .dlq."""
    def publish() -> bool:
        try:
            publish_envelope("task.submitted", body)
        except BrokerUnavailable:  # the shared broker stalls now and then: try again
            return False
        return True

    wait_for(publish, timeout=240, interval=2, what="RabbitMQ to take the message")
    with broker_connection() as conn:
        channel = conn.default_channel
        message = wait_for(lambda: channel.basic_get("task.submitted"), timeout=60, what="the message")
        channel.basic_reject(message.delivery_tag, requeue=False)


@pytest.fixture
def archiver(vhost, log_dir):
    """`dlq` chooses what to replay in the history the archiver writes."""
    archiver = dead_letter_archiver(log_dir, name="archiver-retention").start()
    yield archiver
    archiver.stop()


def test_dlq_replay_skips_a_dead_letter_past_the_replay_window_and_leaves_it_in_the_dlq(
    vhost, patient_broker, archiver
):
    old, recent = envelope(occurred_days_ago=15), envelope(occurred_days_ago=1)
    dead_letter(old)
    dead_letter(recent)
    wait_for(lambda: queue_depth("task.submitted.dlq") == 2, timeout=60, what="two dead letters")
    wait_for(lambda: DeadLetter.objects.filter(event_id__in=[old["event_id"], recent["event_id"]]).count() == 2,
             timeout=120, what="both dead letters archived")

    out = io.StringIO()
    call_command("dlq", "replay", "--all", "--by", "ops", stdout=out)

    text = out.getvalue()
    assert "replayed 1 dead letter(s), skipped 1" in text, text
    assert "beyond the 14-day replay window" in text
    assert queue_depth("task.submitted.dlq") == 1  # the old one stays, for an operator to purge
    assert queue_depth("task.submitted") == 1  # the recent one is back in its work queue
