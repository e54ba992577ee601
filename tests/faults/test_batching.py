"""Messages read in one batch keep their own guarantees: a poison photo and a retry inside a batch.

A real AI worker as the Procfile runs it (a thread pool whose photos are read in batches) on
the private RabbitMQ node. Photos of one batch get the same `inference_ms` (the batch's time
per photo), which is how these tests see that the others were read together.
"""

import re
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from messaging.contracts import TaskSubmittedEvent
from messaging.models import DeadLetter, ProcessedEvent
from messaging.outbox import publish_event
from tasks.models import LaundryTask, Reading
from tests import factories
from tests.faults.test_loss import ai_worker, handled_more_than_once
from tests.support import dead_letter_archiver, queue_depth, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

# long enough that every photo published at once is in hand before the first pass
BATCH = {"ML_BATCH_MAX": "8", "ML_BATCH_WAIT_MS": "300"}


def tasks_with_photos(photos: list[str]) -> list[LaundryTask]:
    helper = factories.helper()
    return LaundryTask.objects.bulk_create(
        LaundryTask(branch=helper.helper.branch, helper=helper, photo=photo, photo_sha256="0" * 64, photo_size=1,
                    photo_content_type="image/jpeg")
        for photo in photos
    )


def publish_all(tasks: list[LaundryTask]) -> dict[int, str]:
    """Publish every task's event in one commit; {task id: event id}."""
    with transaction.atomic():
        return {
            task.pk: str(publish_event(TaskSubmittedEvent(task_id=task.pk, branch_id=task.branch_id,
                                                          helper_id=task.helper_id, photo=task.photo.name)).event_id)
            for task in tasks
        }


def good_photo(name: str, seed: int) -> str:
    return default_storage.save(f"tasks/batch/{name}.jpg", ContentFile(factories.noisy_jpeg(20_000, seed=seed)))


def largest_batch(task_ids) -> int:
    """How many of these readings came out of one forward pass (the same per-photo time)."""
    counts = Counter(Reading.objects.filter(task__in=task_ids).values_list("inference_ms", flat=True))
    return max(counts.values(), default=0)


def test_a_poison_photo_inside_a_batch_fails_alone(private_broker, relay, active_model, log_dir):
    good = [good_photo(f"good-{i}", seed=i) for i in range(7)]
    poison = default_storage.save("tasks/batch/poison.jpg", ContentFile(b"\xff\xd8\xff\xe0 not a jpeg at all"))
    tasks = tasks_with_photos([*good[:3], poison, *good[3:]])
    poisoned = tasks[3]
    worker = ai_worker("ai-batch-poison", log_dir, **BATCH).start()
    archiver = dead_letter_archiver(log_dir, name="archiver-batch-poison").start()
    try:
        events = publish_all(tasks)
        readers = [t.pk for t in tasks if t.pk != poisoned.pk]
        wait_for(lambda: Reading.objects.filter(task__in=readers).count() == 7, timeout=90,
                 what="the seven good photos to be read")
        failed = wait_for(lambda: LaundryTask.objects.filter(pk=poisoned.pk, status="failed").first(),
                          timeout=60, what="the poison photo's task to fail")
        wait_for(lambda: DeadLetter.objects.filter(event_id=events[poisoned.pk]).exists(), timeout=60,
                 what="the poison message to be archived")
    finally:
        archiver.stop()
        log = worker.log()
        worker.stop()

    assert "cannot be decoded" in failed.failure_reason
    assert not Reading.objects.filter(task=poisoned).exists()
    assert LaundryTask.objects.filter(pk__in=readers, status="analyzed").count() == 7
    assert largest_batch(readers) > 1, "the good photos were read in batches"
    # a permanent error: one attempt, no retry, and the others were not retried either
    assert "retrying in" not in log
    assert ProcessedEvent.objects.filter(consumer="ml.read_task_photo").count() == 7
    assert queue_depth("task.submitted") == 0 and queue_depth("task.submitted.dlq") == 1  # the poison alone
    assert handled_more_than_once(log) == {}


def test_a_retry_inside_a_batch_keeps_its_own_schedule_and_dead_letter(private_broker, relay, active_model,
                                                                     log_dir):
    # A directory where the photo should be: opening it is an OSError, not a missing file, so
    # the attempt is retried (1, 2, 4 s). One such photo is repaired after its first failure.
    media = Path(default_storage.location)
    broken, healed = "tasks/batch/broken.jpg", "tasks/batch/healed.jpg"
    for name in (broken, healed):
        (media / name).mkdir(parents=True)
    good = [good_photo(f"fine-{i}", seed=10 + i) for i in range(6)]
    tasks = tasks_with_photos([broken, *good[:3], healed, *good[3:]])
    broken_task, healed_task = tasks[0], tasks[4]
    worker = ai_worker("ai-batch-retry", log_dir, **BATCH).start()
    archiver = dead_letter_archiver(log_dir, name="archiver-batch-retry").start()
    try:
        started = time.monotonic()
        events = publish_all(tasks)
        first_failure = re.compile(rf"retrying in 1s: .*event_id={events[healed_task.pk]}")
        wait_for(lambda: first_failure.search(worker.log()), timeout=60, what="the first failure of the healed photo")
        (media / healed).rmdir()
        (media / healed).write_bytes(factories.noisy_jpeg(20_000, seed=99))
        others = [t.pk for t in tasks if t.pk != broken_task.pk]
        wait_for(lambda: Reading.objects.filter(task__in=others).count() == 7, timeout=90,
                 what="the healed photo and the six others to be read")
        failed = wait_for(lambda: LaundryTask.objects.filter(pk=broken_task.pk, status="failed").first(),
                          timeout=60, what="the broken photo's task to fail after its retries")
        took = time.monotonic() - started
        wait_for(lambda: DeadLetter.objects.filter(event_id=events[broken_task.pk]).exists(), timeout=60,
                 what="the broken photo's message to be archived")
    finally:
        archiver.stop()
        log = worker.log()
        worker.stop()

    def retries_of(task) -> list[str]:
        return re.findall(rf"retrying in (\d+)s: .*event_id={events[task.pk]}", log)

    assert retries_of(broken_task) == ["1", "2", "4"]
    # repaired within its first second of countdown, or (a slow machine) its second
    assert retries_of(healed_task) in (["1"], ["1", "2"])
    assert took > 7, f"dead-lettered after its own 1 + 2 + 4 s of countdown, not {took:.1f} s"
    assert "Is a directory" in failed.failure_reason
    assert DeadLetter.objects.get(event_id=events[broken_task.pk]).consumer == "ml.read_task_photo"
    assert DeadLetter.objects.count() == 1, "only the broken photo's message is dead-lettered"
    assert queue_depth("task.submitted") == 0 and queue_depth("task.submitted.dlq") == 1
    assert LaundryTask.objects.filter(pk__in=others, status="analyzed").count() == 7
    assert largest_batch([t.pk for t in tasks]) > 1, "the others were read in batches"
    assert ProcessedEvent.objects.filter(consumer="ml.read_task_photo").count() == 7
    assert handled_more_than_once(log) == {}


def test_sigterm_finishes_the_batch_in_hand(private_broker, relay, active_model, log_dir):
    # a long wait: the photos are handed in and wait for their batch when SIGTERM arrives
    worker = ai_worker("ai-batch-sigterm", log_dir, ML_BATCH_MAX="8", ML_BATCH_WAIT_MS="3000").start()
    tasks = tasks_with_photos([good_photo(f"term-{i}", seed=30 + i) for i in range(5)])
    events = publish_all(tasks)
    wait_for(lambda: all(f"TaskSubmittedEvent[{e}] received" in worker.log() for e in events.values()),
             timeout=60, what="every message to be in hand")
    assert not Reading.objects.exists(), "still waiting for the batch"

    worker.process.send_signal(signal.SIGTERM)
    worker.process.wait(timeout=60)
    log = worker.log()
    worker.stop()

    assert "warm shutdown" in log.lower()
    assert Reading.objects.filter(task__in=tasks).count() == 5
    assert largest_batch([t.pk for t in tasks]) == 5, "the five were read in one pass"
    assert ProcessedEvent.objects.filter(consumer="ml.read_task_photo").count() == 5
    assert queue_depth("task.submitted") == 0
    assert handled_more_than_once(log) == {}
