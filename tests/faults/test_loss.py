"""Nothing lost, nothing done twice: a killed AI worker, a broker restart, a broker outage.

Each test counts outcomes a user sees (tasks analyzed, one reading each) and, from the
workers' logs, how often each event's handler committed ("processed"): never twice.
"""

import re
from collections import Counter

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction

from messaging import broker
from messaging.contracts import TaskSubmittedEvent
from messaging.models import OutboxMessage, ProcessedEvent
from messaging.outbox import publish_event
from tasks.models import LaundryTask, Reading
from tests import factories
from tests.probe.events import ProbeRecordedEvent
from tests.probe.models import ProbeEffect
from tests.support import CommandProcess, WorkerProcess, queue_depth, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

_PROCESSED = re.compile(r"processed in [\d.]+ ms event_id=(\S+)")


def ai_worker(name: str, log_dir, **env: str) -> WorkerProcess:
    """An AI worker as the Procfile runs it: ML_BATCH_MAX threads reading in batches, one torch
    thread, model preloaded."""
    from django.conf import settings

    batch_max = int(env.get("ML_BATCH_MAX", settings.ML_BATCH_MAX))
    return WorkerProcess(["task.submitted"], name=name, concurrency=batch_max, pool="threads", log_dir=log_dir,
                         ML_PRELOAD="1", TORCH_NUM_THREADS="1", **env)


def handled_more_than_once(*logs: str) -> dict[str, int]:
    counts = Counter(event_id for log in logs for event_id in _PROCESSED.findall(log))
    return {event_id: n for event_id, n in counts.items() if n > 1}


def test_kill_9_of_an_ai_worker_mid_batch_every_task_is_read_exactly_once(
    private_broker, relay, active_model, log_dir
):
    first, second = ai_worker("ai-kill-a", log_dir).start(), ai_worker("ai-kill-b", log_dir).start()
    restarted = ai_worker("ai-kill-a-again", log_dir)
    helper = factories.helper()
    photo = default_storage.save("tasks/faults/kill.jpg", ContentFile(factories.noisy_jpeg(50_000)))
    tasks = LaundryTask.objects.bulk_create(
        LaundryTask(branch=helper.helper.branch, helper=helper, photo=photo, photo_sha256="0" * 64,
                    photo_size=1, photo_content_type="image/jpeg")
        for _ in range(24)
    )
    try:
        with transaction.atomic():
            for task in tasks:
                publish_event(TaskSubmittedEvent(task_id=task.pk, branch_id=task.branch_id, helper_id=helper.pk,
                                                 photo=photo))
        wait_for(lambda: Reading.objects.count() >= 8, timeout=60, what="the batch to be under way")
        first.kill()  # kill -9 of the whole worker, with whatever it holds
        restarted.start()
        wait_for(lambda: Reading.objects.count() == len(tasks), timeout=180, what="every task to be read")
        # a message the killed worker had processed but not acked comes back: it must be skipped.
        # Count unacked copies too: one may sit in a worker's prefetch buffer, which a passive
        # declare reports as an empty queue, and comes back when that worker stops.
        wait_for(lambda: private_broker.messages_in("task.submitted") == 0, timeout=60,
                 what="redelivered copies to be consumed")
    finally:
        logs = [worker.log() for worker in (first, second, restarted) if worker.process]
        for worker in (first, second, restarted):
            worker.stop()

    assert LaundryTask.objects.filter(status="analyzed").count() == len(tasks)
    assert Reading.objects.values("task").distinct().count() == len(tasks)
    assert ProcessedEvent.objects.filter(consumer="ml.read_task_photo").count() == len(tasks)
    assert handled_more_than_once(*logs) == {}
    assert queue_depth("task.submitted") == 0 and queue_depth("task.submitted.dlq") == 0


def test_messages_waiting_in_a_queue_survive_a_broker_restart(private_broker, relay, route_events, log_dir):
    events = [publish_event(ProbeRecordedEvent(label=f"restart-{i}")) for i in range(30)]
    wait_for(lambda: queue_depth("task.submitted") == 30, what="the relay to publish them")

    private_broker.restart()  # the whole node process stops and starts again
    broker.close_connection()  # the publisher's connection died with it

    assert wait_for(lambda: queue_depth("task.submitted"), what="the queue after the restart") == 30
    worker = WorkerProcess(["task.submitted"], name="after-restart", concurrency=2, log_dir=log_dir).start()
    try:
        wait_for(lambda: ProbeEffect.objects.filter(label__startswith="restart-").count() == 30, timeout=60,
                 what="every waiting message to be processed")
    finally:
        log = worker.log()
        worker.stop()
    for event in events:
        assert ProbeEffect.objects.filter(event_id=event.event_id).count() == 1
    assert handled_more_than_once(log) == {}


def test_tasks_posted_while_rabbitmq_is_down_are_read_after_it_is_back_none_twice(
    private_broker, active_model, log_dir
):
    worker = ai_worker("ai-outage", log_dir).start()
    relay = CommandProcess("relay_outbox", "--interval", "0.2", name="relay-outage", log_dir=log_dir,
                           ready="outbox relay started").start()
    helper = factories.helper()
    client = factories.api_client_for(helper)
    accepted = []
    try:
        private_broker.stop_app()
        try:
            for i in range(5):
                photo = SimpleUploadedFile("laundry.jpg", factories.noisy_jpeg(30_000, seed=i),
                                           content_type="image/jpeg")
                response = client.post("/api/v1/tasks/", {"photo": photo}, format="multipart")
                assert response.status_code == 202, response.content
                accepted.append(response.json()["id"])
            assert OutboxMessage.objects.filter(published_at__isnull=True).count() == 5
        finally:
            private_broker.start_app()

        wait_for(lambda: LaundryTask.objects.filter(pk__in=accepted, status="analyzed").count() == 5, timeout=120,
                 what="the tasks accepted during the outage to be read")
    finally:
        log = worker.log()
        relay.stop()
        worker.stop()

    assert Reading.objects.filter(task__in=accepted).count() == 5
    assert ProcessedEvent.objects.filter(consumer="ml.read_task_photo").count() == 5
    assert not OutboxMessage.objects.filter(published_at__isnull=True).exists()
    assert handled_more_than_once(log) == {}
