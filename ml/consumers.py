"""The consumers of the ml app.

* `ml.read_task_photo`: the AI reading of `task.submitted` (the `worker-ai` pool, a thread
  pool: each message's handler decodes its photo and waits for its reading from the
  process's batcher, ml.batching; its transaction, retries and ack stay its own).
* `ml.record_training_sample`: owner-confirmed readings of `task.confirmed` become
  training samples, and enough new ones queue a retraining run (the `worker-mlops` pool).

torch is imported on first use (or at process start in the AI pool, ML_PRELOAD=1), not
when Celery autodiscovers this module, so the other worker pools never load it.

Documented in docs/architecture.md (*Consumers*) and docs/operating.md (*The AI model*, *Retraining*).
"""

from __future__ import annotations

import logging
import os

from celery.signals import worker_init, worker_process_init
from django.core.files.storage import default_storage

from messaging.consumers import event_consumer
from messaging.contracts import TaskAnalyzedEvent, TaskConfirmedEvent, TaskConfirmedEventV1, TaskSubmittedEvent
from messaging.errors import PermanentError
from messaging.outbox import publish_event
from ml.retraining import retrain_if_due
from ml.training_data import training_sample_record
from observability import metrics
from tasks.services import reading_record, task_fail, task_mark_analyzing

logger = logging.getLogger(__name__)


class PhotoUnavailable(PermanentError):
    """The task's photo is gone or is not an image: no retry can read it."""


# A reading waits for its batch at most this long (the thread pool does not enforce the
# task's time limits); then the attempt fails and is retried.
READING_TIMEOUT_SECONDS = 25.0


def _mark_analyzing(event: TaskSubmittedEvent, envelope, exc: BaseException) -> None:
    # Only when an attempt failed: a reading that works takes milliseconds, and a mark then
    # would cost a statement and a commit per photo to say what nobody has time to see.
    task_mark_analyzing(task_id=event.task_id)


def _mark_failed(event: TaskSubmittedEvent, envelope, exc: BaseException) -> None:
    task_fail(task_id=event.task_id, reason=f"The AI could not read the photo: {exc}")


def load_photo(name: str) -> bytes:
    try:
        with default_storage.open(name, "rb") as photo:
            return photo.read()
    except FileNotFoundError as exc:
        raise PhotoUnavailable(f"the photo {name} has disappeared from storage") from exc


@event_consumer(
    TaskSubmittedEvent,
    name="ml.read_task_photo",
    queue="task.submitted",
    on_retry=_mark_analyzing,
    on_dead_letter=_mark_failed,
    soft_time_limit=30,
    time_limit=60,
)
def read_task_photo(event: TaskSubmittedEvent, envelope) -> None:
    from ml.errors import UndecodablePhoto
    from ml.inference import active_reader, decode_photo, read_in_batch
    from ml.preprocess import squash

    data = load_photo(event.photo)
    image_size = active_reader().image_size
    try:
        # the model sees image_size pixels: decoding at twice that is plenty (JPEG draft
        # mode), as the retraining's judge decodes the photos it reads
        image = decode_photo(data, min_side=2 * image_size)
    except UndecodablePhoto as exc:
        raise PhotoUnavailable(f"the photo {event.photo} cannot be decoded: {exc}") from exc
    # resized here, in this message's thread, so the batcher's thread only runs the model;
    # if another version with another size takes over meanwhile, the batch resizes again
    prediction = read_in_batch(squash(image, image_size), timeout=READING_TIMEOUT_SECONDS)
    metrics.inference_observed(prediction.inference_ms)
    reading_record(
        task_id=event.task_id,
        labels=prediction.labels,
        confidences=prediction.confidences,
        model_version=prediction.model_version,
        inference_ms=prediction.inference_ms,
    )
    # in the reading's transaction: its subscribers (the audit trail, the helper's push) hear of it
    publish_event(TaskAnalyzedEvent(
        task_id=event.task_id, branch_id=event.branch_id, helper_id=event.helper_id, labels=prediction.labels,
        confidences=prediction.confidences, model_version=prediction.model_version,
    ))
    # task_id, event_id and correlation_id come with the consumer's log context
    logger.info(
        "task %s read as %s by model %s in %.0f ms", event.task_id,
        ", ".join(f"{head}={label}" for head, label in prediction.labels.items()),
        prediction.model_version, prediction.inference_ms,
        extra={"model_version": prediction.model_version, "inference_ms": round(prediction.inference_ms, 1)},
    )


@event_consumer(
    TaskConfirmedEventV1,
    TaskConfirmedEvent,
    name="ml.record_training_sample",
    queue="task.confirmed",
    soft_time_limit=30,
    time_limit=60,
)
def record_training_sample(event: TaskConfirmedEvent | TaskConfirmedEventV1, envelope) -> None:
    # Version 1 (still accepted) has no photo hash and untyped labels; the hash is then
    # computed from the photo, and the labels are checked against the vocabulary here.
    confirmed = event.confirmed_labels
    labels = confirmed.model_dump() if hasattr(confirmed, "model_dump") else dict(confirmed)
    training_sample_record(
        task_id=event.task_id,
        branch_id=event.branch_id,
        photo=event.photo,
        labels=labels,
        ai_labels=event.ai_labels,
        model_version=event.model_version,
        confirmed_by=event.confirmed_by,
        confirmed_at=getattr(event, "confirmed_at", None) or envelope.occurred_at,
        event_id=envelope.event_id,
        photo_sha256=getattr(event, "photo_sha256", None),
    )
    retrain_if_due()


@worker_init.connect
def _preload_model_in_thread_pool(sender=None, **_: object) -> None:
    # A thread-pool worker (the AI pool) runs its tasks in this process: load it here,
    # before it consumes. A prefork worker loads it in each child (below), never in the parent.
    pool = getattr(sender, "pool_cls", "")
    name = pool if isinstance(pool, str) else f"{pool.__module__}.{pool.__qualname__}"
    if "thread" in name.lower():
        _preload_model()
        from django.db import connections

        connections.close_all()  # the main thread's connection: its tasks run in threads of their own


@worker_process_init.connect
def _preload_model(**_: object) -> None:
    # The AI pool sets ML_PRELOAD=1 so its first message does not pay for importing
    # torch and loading the model; a missing model is reported, not fatal.
    if os.environ.get("ML_PRELOAD") != "1":
        return
    try:
        from ml.inference import active_reader

        active_reader()
    except Exception as exc:
        logger.warning("AI model not preloaded: %s", exc)
