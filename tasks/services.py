"""The helper's laundry tasks: every write goes through these services.

This module is a producer of events; it imports nothing from `ml` or `notifications`
(DG-03 in docs/decisions.md): it only knows the event contracts in `messaging.contracts`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.utils import timezone
from pydantic import ValidationError

from branches.models import Branch
from messaging.contracts import LABEL_VOCABULARY, LaundryLabels, TaskConfirmedEvent, TaskSubmittedEvent
from messaging.outbox import event_row_cte, publish_event
from tasks.models import LaundryTask, Reading
from tasks.photos import check_photo

logger = logging.getLogger(__name__)


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key was used before for a different request."""


class TaskNotFound(LookupError):
    """No such task among the branches the user owns."""


class TaskNotConfirmable(Exception):
    """The task has no AI reading to confirm (yet), or was confirmed with other labels."""


class InvalidLabels(ValueError):
    """The owner's labels do not fit the reading: `errors` maps a label space to what is wrong."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{head}: {error}" for head, error in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class Submission:
    task: LaundryTask
    created: bool  # False when an earlier request with the same Idempotency-Key made it


def task_submit(
    *, helper: AbstractBaseUser, branch: Branch, photo, note: str = "", idempotency_key: str | None = None
) -> Submission:
    """Store a task with its photo and publish TaskSubmittedEvent, all or nothing.

    With an idempotency key, a repeated request (also a concurrent one) returns the task
    of the first; the same key with another photo raises IdempotencyKeyReused.
    Raises tasks.photos.PhotoRejected for a photo that is not acceptable.

    The photo is written first; then one statement inserts the task and its outbox row (in
    autocommit, its own transaction: no BEGIN or COMMIT round trips). The key is checked by the
    insert itself (ON CONFLICT DO NOTHING): a known key costs a read of the first task, a new
    one nothing. Whatever refuses or fails after the photo was written removes it again.
    """
    checked = check_photo(photo)
    task = LaundryTask(
        branch=branch,
        helper=helper,
        note=note,
        photo_sha256=checked.sha256,
        photo_size=checked.size,
        photo_content_type=checked.content_type,
        idempotency_key=idempotency_key or None,
    )
    task.photo.save(f"photo.{checked.extension}", photo, save=False)
    try:
        # Inside a caller's transaction, a savepoint: a failed insert leaves that transaction usable.
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            created = _insert_with_its_event(task)
        if not created:
            earlier = _earlier_submission(helper, task.idempotency_key, checked.sha256)
    except BaseException:
        _delete_stored_photo(task)
        raise
    if not created:
        _delete_stored_photo(task)  # the task is the first request's, with its photo
        return earlier
    return Submission(task, created=True)


def _insert_with_its_event(task: LaundryTask) -> bool:
    """INSERT the task and its TaskSubmittedEvent's outbox row, unless its helper used its
    idempotency key before; True when inserted.

    One statement: the outbox row is inserted from the task's RETURNING, so there is one
    exactly when there is a task. A concurrent request with the same key waits for the first
    one's transaction, then inserts nothing (it committed) or inserts (it rolled back).
    """
    meta = LaundryTask._meta
    fields = [field for field in meta.concrete_fields if not field.primary_key]
    # pre_save sets created_at/updated_at on the task, as save() would: before the event's own
    # time is taken, so that the event is not older than its task (the operator's timeline)
    values = [field.get_db_prep_save(field.pre_save(task, add=True), connection) for field in fields]
    event = event_row_cte(
        TaskSubmittedEvent, {"branch_id": task.branch_id, "helper_id": task.helper_id, "photo": task.photo.name},
        name="event", rows_of="task", ids={"task_id": "id"},
    )
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        connection.execute_prepared(  # planned once per connection (fitness.db)
            cursor, "task_insert_with_its_event",
            f"WITH task AS (INSERT INTO {quote(meta.db_table)} ({', '.join(quote(field.column) for field in fields)})"
            f" VALUES ({', '.join(['%s'] * len(fields))})"
            # the partial unique constraint laundry_task_idempotency_key_per_helper
            f" ON CONFLICT (helper_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING"
            f" RETURNING {quote(meta.pk.column)} AS id), {event.sql}"
            f" SELECT (SELECT id FROM task), (SELECT id FROM event)",
            [*values, *event.params],
        )
        task_id, event_row_id = cursor.fetchone()
    if task_id is None:
        return False
    task.pk = task_id
    task._state.adding, task._state.db = False, connection.alias
    event.written(event_row_id, task_id=task_id)
    return True


def _earlier_submission(helper: AbstractBaseUser, key: str, sha256: str) -> Submission:
    earlier = LaundryTask.objects.filter(helper=helper, idempotency_key=key).first()
    if earlier is None:  # the first task was deleted since the insert found it
        raise IdempotencyKeyReused(f"The Idempotency-Key {key!r} was used for a task that no longer exists.")
    if earlier.photo_sha256 != sha256:
        raise IdempotencyKeyReused(f"The Idempotency-Key {key!r} was already used for another photo.")
    return Submission(earlier, created=False)


def _delete_stored_photo(task: LaundryTask) -> None:
    if task.photo.name:
        try:
            default_storage.delete(task.photo.name)
        except Exception:  # the original error matters more; log this one
            logger.exception("could not delete the photo %s of a task that was not saved", task.photo.name)


def task_mark_analyzing(*, task_id: int) -> bool:
    """The AI worker has started on the task; True when it moved from `submitted`."""
    return bool(
        LaundryTask.objects.filter(pk=task_id, status=LaundryTask.Status.SUBMITTED).update(
            status=LaundryTask.Status.ANALYZING
        )
    )


def reading_record(
    *, task_id: int, labels: dict[str, str], confidences: dict[str, float], model_version: str, inference_ms: float
) -> int:
    """Store the AI reading of a task (replacing an earlier one) and mark the task `analyzed`; its id.

    One statement, no read-modify-write: this runs once per photo in the AI workers, where the
    ORM's two statements (an UPDATE and an upsert) cost a round trip and their SQL building.
    A confirmed task keeps its status (its owner has spoken); its reading is still replaced.
    """
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(_READING_UPSERT, [
            LaundryTask.Status.ANALYZED, now, task_id,
            [LaundryTask.Status.SUBMITTED, LaundryTask.Status.ANALYZING, LaundryTask.Status.FAILED],
            task_id, json.dumps(labels), json.dumps(confidences), model_version, inference_ms, now,
        ])
        return cursor.fetchone()[0]


_READING_UPSERT = (
    f"WITH marked AS (UPDATE {LaundryTask._meta.db_table} SET status = %s, failure_reason = '', updated_at = %s"
    " WHERE id = %s AND status = ANY(%s))"
    f" INSERT INTO {Reading._meta.db_table} (task_id, labels, confidences, model_version, inference_ms, created_at)"
    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (task_id) DO UPDATE SET labels = EXCLUDED.labels,"
    " confidences = EXCLUDED.confidences, model_version = EXCLUDED.model_version,"
    " inference_ms = EXCLUDED.inference_ms, created_at = EXCLUDED.created_at RETURNING id"
)


def task_fail(*, task_id: int, reason: str) -> bool:
    """The task's event was dead-lettered: mark it `failed` with the reason."""
    return bool(
        LaundryTask.objects.filter(
            pk=task_id, status__in=[LaundryTask.Status.SUBMITTED, LaundryTask.Status.ANALYZING]
        ).update(status=LaundryTask.Status.FAILED, failure_reason=reason[:2000])
    )


@dataclass(frozen=True)
class Confirmation:
    task: LaundryTask
    created: bool  # False when the task had already been confirmed with these labels


def task_confirm(
    *, task_id: int, owner: AbstractBaseUser, labels: Mapping[str, str] | None = None
) -> Confirmation:
    """The branch owner confirms the AI reading of a task (`labels` None) or corrects it.

    Stores the confirmed labels, moves the task to `confirmed` and publishes
    TaskConfirmedEvent (training data) in one transaction. Confirming again with the same
    labels (or with none) changes nothing and publishes nothing.

    Raises TaskNotFound for a task outside the owner's branches, InvalidLabels for labels
    whose label spaces differ from the reading's or that are not in the vocabulary (whatever
    the task's state: bad input is judged before the state), and TaskNotConfirmable for a
    task without a reading or one confirmed with other labels.
    """
    with transaction.atomic():
        task = (
            LaundryTask.objects.select_for_update(of=("self",))
            .select_related("reading")
            .filter(pk=task_id, branch__owner_id=owner.pk)
            .first()
        )
        if task is None:
            raise TaskNotFound(f"There is no task {task_id} in your branches.")
        reading = getattr(task, "reading", None)
        if labels is not None:
            # Invalid input is a 400 whatever the task's state, so it is judged first: against
            # the reading's label spaces when there is a reading, else against the vocabulary.
            errors = _label_errors(dict(labels), reading.labels if reading is not None else None)
            if errors:
                raise InvalidLabels(errors)
        if task.status == LaundryTask.Status.CONFIRMED:
            if labels is None or dict(labels) == task.confirmed_labels:
                return Confirmation(task, created=False)
            raise TaskNotConfirmable(
                f"Task {task_id} was already confirmed as {_describe(task.confirmed_labels)}."
            )
        if task.status != LaundryTask.Status.ANALYZED or reading is None:
            raise TaskNotConfirmable(
                f"Task {task_id} has no AI reading to confirm; it is {task.status}."
            )
        confirmed = _checked_labels(dict(labels) if labels is not None else dict(reading.labels), reading.labels)
        task.status = LaundryTask.Status.CONFIRMED
        task.confirmed_labels = confirmed.model_dump()
        task.confirmed_by = owner
        task.confirmed_at = timezone.now()
        task.save(update_fields=["status", "confirmed_labels", "confirmed_by", "confirmed_at", "updated_at"])
        publish_event(
            TaskConfirmedEvent(
                task_id=task.pk,
                branch_id=task.branch_id,
                photo=task.photo.name,
                photo_sha256=task.photo_sha256,
                ai_labels=reading.labels,
                confirmed_labels=confirmed,
                model_version=reading.model_version,
                confirmed_by=owner.pk,
                confirmed_at=task.confirmed_at,
            )
        )
    logger.info("task %s confirmed as %s by user %s", task.pk, _describe(task.confirmed_labels), owner.pk,
                extra={"task_id": task.pk})
    return Confirmation(task, created=True)


def _label_errors(labels: dict, read: Mapping[str, str] | None) -> dict[str, str]:
    """What is wrong with `labels`, by label space: judged against the reading's label spaces
    (`read`), or, for a task without a reading, against the vocabulary alone."""
    spaces = read if read is not None else LABEL_VOCABULARY
    errors: dict[str, str] = {}
    if read is not None:
        for head in sorted(set(read) - set(labels)):
            errors[head] = "Missing: give a label for every label space of the reading."
    for head in sorted(set(labels) - set(spaces)):
        where = "the reading has" if read is not None else "the known ones are"
        errors[head] = f"Unknown label space; {where} {', '.join(sorted(spaces))}."
    for head, label in labels.items():
        known = LABEL_VOCABULARY.get(head)
        if head in spaces and known is not None and label not in known:
            errors[head] = f"Unknown label {label!r}; the known ones are: {', '.join(known)}."
    return errors


def _checked_labels(labels: dict, read: Mapping[str, str]) -> LaundryLabels:
    errors = _label_errors(labels, read)
    if errors:
        raise InvalidLabels(errors)
    try:
        return LaundryLabels.model_validate(labels)
    except ValidationError as exc:  # e.g. a reading by a model with other label spaces
        raise InvalidLabels(
            {".".join(str(p) for p in error["loc"]) or "labels": error["msg"] for error in exc.errors()}
        ) from exc


def _describe(labels: Mapping[str, str] | None) -> str:
    return ", ".join(f"{head} {label}" for head, label in (labels or {}).items()) or "nothing"
