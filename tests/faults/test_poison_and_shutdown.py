"""Poison messages and graceful shutdown, with real workers on the private RabbitMQ node."""

import signal
import time

import pytest

from messaging.contracts import TaskSubmittedEvent
from messaging.models import DeadLetter, ProcessedEvent
from messaging.outbox import publish_event
from tasks.models import LaundryTask
from tests import factories
from tests.probe.events import ProbeCrashEvent, ProbeRecordedEvent, ProbeSlowEvent
from tests.probe.models import ProbeEffect
from tests.support import WorkerProcess, broker_connection, dead_letter_archiver, queue_depth, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_message_that_kills_its_worker_is_dead_lettered_by_the_delivery_limit_while_others_flow(
    private_broker, relay, route_events, log_dir
):
    route_events("ProbeCrashEvent", "task.submitted")
    worker = WorkerProcess(["task.submitted"], name="poison", concurrency=2, log_dir=log_dir).start()
    archiver = dead_letter_archiver(log_dir, name="archiver-poison").start()
    try:
        poison = publish_event(ProbeCrashEvent(label="poison"))
        flowing = [publish_event(ProbeRecordedEvent(label=f"flow-{i}")) for i in range(10)]

        wait_for(lambda: ProbeEffect.objects.filter(label__startswith="flow-").count() == 10,
                 timeout=60, what="the other messages to be processed")
        row = wait_for(lambda: DeadLetter.objects.filter(event_id=poison.event_id, deaths=1).first(),
                       timeout=60, what="the poison message to be dead-lettered and archived")
    finally:
        archiver.stop()
        worker_log = worker.log()
        alive = worker.process.poll() is None
        worker.stop()

    assert (row.reason, row.attempts, row.consumer) == ("delivery_limit", 6, "tests.crash_probe")
    assert "the worker died while handling it" in row.error
    # the consumer's dead-letter hook ran (in the archiver: no worker lived to run it)
    assert ProbeEffect.objects.filter(label="dead-lettered:poison").count() == 1
    # delivered once and redelivered 5 times (the delivery limit), then dead-lettered
    assert worker_log.count("exited with 'exitcode 13'") == 6
    assert alive, "the worker itself survives its pool processes dying"
    assert queue_depth("task.submitted") == 0 and queue_depth("task.submitted.dlq") == 1
    for event in flowing:
        assert ProcessedEvent.objects.filter(event_id=event.event_id).count() == 1


def test_a_task_whose_event_keeps_killing_workers_ends_failed(private_broker, relay, log_dir):
    helper = factories.helper()
    task = LaundryTask.objects.create(branch=helper.helper.branch, helper=helper, photo="tasks/killer.jpg",
                                      photo_sha256="0" * 64, photo_size=1, photo_content_type="image/jpeg")
    archiver = dead_letter_archiver(log_dir, name="archiver-poison-task").start()
    try:
        message = publish_event(TaskSubmittedEvent(task_id=task.pk, branch_id=task.branch_id, helper_id=helper.pk,
                                                   photo=task.photo.name))
        # To RabbitMQ, a worker that dies holding a message is a consumer whose channel
        # closed without an ack: the message comes back. Six times, and the limit is reached.
        with broker_connection() as connection:
            for _ in range(6):
                channel = connection.channel()
                delivered = wait_for(lambda ch=channel: ch.basic_get("task.submitted", no_ack=False),
                                     what="the delivery")
                assert delivered.headers["id"] == str(message.event_id)
                channel.close()

        failed = wait_for(lambda: LaundryTask.objects.filter(pk=task.pk, status="failed").first(),
                          timeout=30, what="the task to be marked failed")
    finally:
        archiver.stop()

    assert "the worker died while handling it" in failed.failure_reason
    assert DeadLetter.objects.get(event_id=message.event_id).reason == "delivery_limit"


def test_sigterm_finishes_the_message_in_hand_and_leaves_the_rest_queued(
    private_broker, relay, route_events, log_dir
):
    route_events("ProbeSlowEvent", "task.submitted")
    worker = WorkerProcess(["task.submitted"], name="shutdown", concurrency=1, log_dir=log_dir).start()
    events = [publish_event(ProbeSlowEvent(label=f"slow-{i}", seconds=2)) for i in range(4)]
    wait_for(lambda: f"ProbeSlowEvent[{events[0].event_id}] received" in worker.log(), what="the first message")
    time.sleep(0.5)  # it is in the handler now

    worker.process.send_signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    worker.process.wait(timeout=30)
    took = time.monotonic() - stopped_at
    log = worker.log()
    worker.stop()

    assert "warm shutdown" in log.lower()
    assert 1.5 < took < 20, f"it waited for the message in hand ({took:.1f} s)"
    assert list(ProbeEffect.objects.filter(label__startswith="slow-").values_list("label", flat=True)) == ["slow-0"]
    assert queue_depth("task.submitted") == 3, "the rest stays queued for the next worker"

    successor = WorkerProcess(["task.submitted"], name="successor", concurrency=2, log_dir=log_dir).start()
    try:
        wait_for(lambda: ProbeEffect.objects.filter(label__startswith="slow-").count() == 4, timeout=60,
                 what="the rest to be processed by the next worker")
    finally:
        successor.stop()
    for event in events:
        assert ProbeEffect.objects.filter(event_id=event.event_id).count() == 1
