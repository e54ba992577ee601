"""The base consumer, through a real worker: idempotency, retries, dead-lettering."""

import json
import uuid
from pathlib import Path

import pytest

from fitness.celery import app as celery_app
from messaging.broker import publish_envelope
from messaging.events import Envelope
from messaging.models import ProcessedEvent
from messaging.outbox import publish_event
from tests.probe.events import ProbeFailingEvent, ProbeRecordedEvent
from tests.probe.models import ProbeEffect
from tests.support import drain_queue, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("relay")]

DLQ = "task.submitted.dlq"


def dead_letter(event_id, *, timeout: float = 30.0):
    """Wait until the dead letter of `event_id` is in the DLQ; return (message, body)."""
    found = {}

    def look():
        for message in drain_queue(DLQ):
            found[message.headers.get("id")] = message
        return found.get(str(event_id))

    message = wait_for(look, timeout=timeout, what=f"{event_id} in {DLQ}")
    return message, json.loads(message.body)


def test_the_same_event_delivered_twice_has_one_effect(probe_worker, route_events):
    envelope = Envelope.wrap(ProbeRecordedEvent(label="twice"), correlation_id="req-twice").as_message_body()
    publish_envelope("task.submitted", envelope)
    publish_envelope("task.submitted", envelope)

    wait_for(
        lambda: f"skipped: already processed event_id={envelope['event_id']}" in probe_worker.log(),
        what="the second delivery to be skipped",
    )
    assert ProbeEffect.objects.filter(label="twice").count() == 1
    assert ProcessedEvent.objects.filter(event_id=envelope["event_id"]).count() == 1


def test_a_transient_failure_retries_after_1_2_4_seconds_then_is_dead_lettered_intact(
    probe_worker, route_events, tmp_path: Path
):
    attempts = tmp_path / "attempts.log"
    message = publish_event(ProbeFailingEvent(label="transient", attempt_log=str(attempts)))

    dead, body = dead_letter(message.event_id)

    times = [float(line) for line in attempts.read_text().split()]
    assert len(times) == 4, f"expected 1 attempt + 3 retries, got {len(times)}"
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    for gap, expected in zip(gaps, [1, 2, 4], strict=True):
        # never sooner than the backoff; later only by scheduling noise
        assert expected - 0.25 <= gap <= expected + 3, gaps
    args, kwargs, _ = body
    assert kwargs == {"event": message.envelope}, "the dead letter keeps the original envelope"
    assert dead.headers["retries"] == 3
    # the newest x-death entry is the rejection; older ones are the delayed-retry queues
    death = dead.headers["x-death"][0]
    assert (death["reason"], death["queue"], death["count"]) == ("rejected", "task.submitted", 1)


def test_a_permanent_failure_is_dead_lettered_without_retrying(probe_worker, route_events, tmp_path: Path):
    attempts = tmp_path / "attempts.log"
    message = publish_event(ProbeFailingEvent(label="permanent", attempt_log=str(attempts), permanent=True))

    dead, body = dead_letter(message.event_id)

    assert len(attempts.read_text().split()) == 1
    assert dead.headers["retries"] == 0
    assert body[1] == {"event": message.envelope}


def test_a_message_that_is_not_an_event_is_dead_lettered_without_retrying(probe_worker):
    task_id = str(uuid.uuid4())
    celery_app.send_task(
        "ProbeRecordedEvent", kwargs={"event": {"label": "no envelope"}}, task_id=task_id,
        queue="task.submitted", declare=[],
    )

    dead, body = dead_letter(task_id)

    assert dead.headers["retries"] == 0
    assert body[1] == {"event": {"label": "no envelope"}}
    assert "not an event envelope" in probe_worker.log()


def test_a_payload_that_breaks_its_contract_is_dead_lettered(probe_worker):
    envelope = Envelope.wrap(ProbeRecordedEvent(label="x"), correlation_id=None).as_message_body()
    envelope["payload"] = {"label": "", "unexpected": 1}
    publish_envelope("task.submitted", envelope)

    dead, _ = dead_letter(envelope["event_id"])

    assert dead.headers["retries"] == 0
    assert f"{envelope['event_id']}: payload invalid" in probe_worker.log()
    assert not ProbeEffect.objects.exists()


def test_an_event_no_worker_knows_is_dead_lettered(probe_worker):
    task_id = str(uuid.uuid4())
    celery_app.send_task("NoSuchEvent", kwargs={"event": {}}, task_id=task_id, queue="task.submitted", declare=[])

    dead, _ = dead_letter(task_id)

    assert dead.headers["task"] == "NoSuchEvent"


@pytest.mark.django_db(transaction=True)
def test_a_non_atomic_consumer_runs_outside_a_transaction_and_once_per_event():
    from tests.probe.consumers import external_probe
    from tests.probe.events import ProbeExternalEvent

    body = Envelope.wrap(ProbeExternalEvent(label="push"), correlation_id=None).as_message_body()

    assert external_probe(event=body) == "processed"
    assert external_probe(event=body) == "duplicate"  # a redelivery after it returned

    assert list(ProbeEffect.objects.values_list("label", flat=True)) == ["push:in_atomic=False"]
    assert ProcessedEvent.objects.filter(consumer="tests.external_probe").count() == 1
