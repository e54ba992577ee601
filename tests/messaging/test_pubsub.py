"""Publish–subscribe (issue 17): a subscriber is added by declaration only, while the web runs.

The web process (gunicorn, started before the subscriber existed) and a relay publish as they
always do; the new subscriber's queue gets a copy of every TaskSubmittedEvent, the other
subscribers still get theirs, and its failures go to its own `.dlq` alone.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest
import requests
from django.core.management import call_command
from kombu import Queue

from audit.models import EventLogEntry
from fitness import topology
from messaging.models import DeadLetter, EventActivity
from tests import factories
from tests.probe.late import LATE_QUEUE, late_subscriber
from tests.probe.models import ProbeEffect
from tests.support import CommandProcess, WorkerProcess, broker_connection, drain_queue, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

BY_HAND = "probe.bound-by-hand"


def depth_and_consumers(name: str) -> tuple[int, int]:
    with broker_connection() as conn:
        _, ready, consumers = conn.default_channel.queue_declare(name, passive=True)
        return ready, consumers


@pytest.fixture
def added_subscriber(monkeypatch, broker_vhost):
    """Declare the late subscriber in this process and run `setup_broker`: nothing else changes."""
    monkeypatch.setattr(topology, "WORK_QUEUES", topology.WORK_QUEUES)
    monkeypatch.setattr(topology, "_CELERY_QUEUES", list(topology._CELERY_QUEUES))
    subscriber = topology.add_subscriber(late_subscriber())
    call_command("setup_broker", verbosity=0, stdout=open("/dev/null", "w"))
    yield subscriber
    with broker_connection() as conn:
        for name in (LATE_QUEUE, subscriber.dead_letter_queue_name, BY_HAND):
            conn.default_channel.queue_delete(name)


@pytest.fixture
def relay(log_dir):
    process = CommandProcess("relay_outbox", "--interval", "0.2", name="relay-pubsub", log_dir=log_dir,
                             ready="outbox relay started").start()
    yield process
    process.stop()


def upload(web, token: str) -> int:
    response = requests.post(
        f"{web.url}/api/v1/tasks/", headers={"Authorization": f"Token {token}",
                                             "Idempotency-Key": str(uuid.uuid4())},
        files={"photo": ("shirt.jpg", factories.photo_bytes(), "image/jpeg")}, timeout=30,
    )
    assert response.status_code == 202, response.text
    return response.json()["id"]


def test_a_subscriber_declared_while_the_web_runs_gets_every_event_and_its_failures_stay_its_own(
    web, relay, added_subscriber, log_dir, tmp_path: Path
):
    web_pid = web.process.pid  # started before the subscriber existed; never restarted below
    helper = factories.helper(factories.branch())
    token = factories.api_token(helper)
    with broker_connection() as conn:  # someone binds a queue of their own by hand
        Queue(BY_HAND, exchange=topology.EVENTS_EXCHANGE, routing_key="TaskSubmittedEvent", durable=True,
              queue_arguments={"x-queue-type": "quorum"}).bind(conn.default_channel).declare()
    ai_ready, ai_consumers = depth_and_consumers("task.submitted")
    failing = tmp_path / "fail"
    late = WorkerProcess([LATE_QUEUE], name="late", app="tests.late_subscriber", log_dir=log_dir,
                         LATE_SUBSCRIBER_FAILS_FOR=str(failing)).start()
    audit = WorkerProcess([topology.AUDIT_QUEUE], name="audit", log_dir=log_dir).start()
    try:
        # --- the running web process delivers to the new subscriber -----------------------------
        first = upload(web, token)
        effect = wait_for(lambda: ProbeEffect.objects.filter(label=f"late:{first}").first(),
                          what="the late subscriber's effect")
        # --- the other subscribers are unaffected: the audit trail, the AI's queue, a hand-bound queue
        logged = wait_for(lambda: EventLogEntry.objects.filter(event_id=effect.event_id).first(),
                          what="the audit subscriber's record")
        assert logged.event_type == "TaskSubmittedEvent" and logged.task_id == first
        if ai_consumers == 0:  # nobody reads photos in this run: the AI's copy waits in its queue
            wait_for(lambda: depth_and_consumers("task.submitted")[0] == ai_ready + 1, what="the AI's copy")
        by_hand = wait_for(lambda: drain_queue(BY_HAND), what="the copy in the queue bound by hand")
        assert [json.loads(m.body)[1]["event"]["event_id"] for m in by_hand] == [str(effect.event_id)]
        subscribers = set(EventActivity.objects.filter(event_id=effect.event_id, kind="processed")
                          .values_list("subscriber", flat=True))
        assert {"tests.late_subscriber", "audit.record_event"} <= subscribers

        # --- its failures go to its own .dlq alone ----------------------------------------------
        failing.touch()
        second = upload(web, token)
        second_event = wait_for(lambda: EventLogEntry.objects.filter(task_id=second).first(),
                                what="the second upload in the audit log")

        def dead_in_late_dlq():
            return [m for m in drain_queue(added_subscriber.dead_letter_queue_name)
                    if m.headers.get("id") == str(second_event.event_id)]

        (dead,) = wait_for(dead_in_late_dlq, what="the late subscriber's dead letter")
        assert dead.headers["x-death"][0]["queue"] == LATE_QUEUE
        assert EventActivity.objects.get(event_id=second_event.event_id, subscriber="tests.late_subscriber",
                                         kind="dead_lettered").queue == LATE_QUEUE
        for other in topology.WORK_QUEUES:
            if other.name != LATE_QUEUE:
                held = [m for m in drain_queue(other.dead_letter_queue_name) if m.headers.get("id") in
                        {str(second_event.event_id), str(effect.event_id)}]
                assert held == [], other.dead_letter_queue_name
        assert not DeadLetter.objects.filter(event_id=str(second_event.event_id)).exclude(queue=LATE_QUEUE).exists()
        assert EventActivity.objects.filter(event_id=second_event.event_id, subscriber="audit.record_event",
                                            kind="processed").exists()
        assert web.process.pid == web_pid and web.process.poll() is None
    finally:
        late.stop()
        audit.stop()


def test_a_worker_that_would_consume_two_subscribers_of_one_event_type_does_not_start(log_dir):
    worker = WorkerProcess(["task.submitted", topology.AUDIT_QUEUE], name="two-subscribers", log_dir=log_dir)
    worker.launch()
    try:
        wait_for(lambda: worker.process.poll() is not None, timeout=60, what="the worker to exit")
    finally:
        worker.kill()
    assert worker.process.returncode != 0
    lines = [line for line in worker.log().splitlines() if line.startswith("worker not started")]
    assert lines == [
        "worker not started: a worker consumes at most one subscriber queue per event type; these -Q queues "
        "share TaskSubmittedEvent (audit, task.submitted): run them in separate workers"
    ], worker.log()
    assert sys.executable
