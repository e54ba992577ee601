"""The archiver's record of each death of a dead letter, and the consumers' dead-letter hooks.

See `messaging.dead_letters` (`dead-letters.archive`, and why a `delivery_limit` death runs
the consumer's hook here).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from fitness.celery import app as celery_app
from messaging.dead_letters.messages import DeadLetterMessage, jsonable, message_fields, row_defaults
from messaging.errors import PermanentError
from messaging.events import parse_message
from messaging.models import DeadLetter
from observability import metrics

logger = logging.getLogger("messaging.dead_letters")


@dataclass(frozen=True)
class ArchiveResult:
    record: DeadLetter
    new_death: bool  # False: this copy was archived before (a redelivery)
    hook_ran: bool = False


def worker_died_error(message: DeadLetterMessage) -> str:
    return (
        f"the worker died while handling it ({message.attempts} deliveries: killed, crashed or out of memory); "
        f"dead-lettered by the queue's delivery limit"
    )


def _death_key(message: DeadLetterMessage) -> str:
    """What tells two deaths of one event apart; a redelivered archive copy repeats it."""
    when = message.dead_at.isoformat() if message.dead_at else "-"
    return f"{message.reason}:{message.replays}:{message.deaths}:{when}"[:100]


def dead_letter_archive(message: DeadLetterMessage) -> ArchiveResult:
    """Record one dead letter in PostgreSQL, once per death (idempotent for redeliveries).

    For a `delivery_limit` death, no failure handler ran (its worker died), so the
    consumer's dead-letter hook runs here, in the same transaction as the record.
    """
    key = _death_key(message)
    with transaction.atomic():
        row, created = DeadLetter.objects.select_for_update().get_or_create(
            queue=message.queue, event_id=message.event_id, defaults=row_defaults(message)
        )
        if not created and row.deaths and row.death_key == key:
            return ArchiveResult(row, new_death=False)
        row.deaths += 1
        row.death_key = key
        row.event_type = message.event_type or row.event_type
        if message.envelope is not None or row.envelope is None:
            row.envelope = message.envelope if message.envelope is not None else jsonable(message.body)
        row.reason = message.reason
        row.attempts = message.attempts
        for name, value in message_fields(message).items():
            setattr(row, name, value)
        dead_at = message.dead_at or timezone.now()
        row.first_dead_at = min(row.first_dead_at or dead_at, dead_at)
        row.last_dead_at = max(row.last_dead_at or dead_at, dead_at)
        hook_ran = False
        if message.reason == "delivery_limit":
            row.error = worker_died_error(message)
            hook_ran = _run_dead_letter_hook(message, row)
        elif not row.error:
            row.error = f"{message.reason}: no error was recorded by a consumer (see the worker log for " \
                        f"event_id={message.event_id})"
        row.save()
    metrics.dead_letter_archived(row.queue, row.event_type, row.reason)
    return ArchiveResult(row, new_death=True, hook_ran=hook_ran)


_consumers_loaded = False


def _consumer_task(name: str):
    """The registered Celery task `name`, after loading every app's consumers as a worker does."""
    global _consumers_loaded
    if not _consumers_loaded:
        celery_app.loader.import_default_modules()
        _consumers_loaded = True
    return celery_app.tasks.get(name)


class WorkerDied(Exception):
    """What a dead-letter hook is given when the worker died instead of raising."""


def _run_dead_letter_hook(message: DeadLetterMessage, row: DeadLetter) -> bool:
    """Call the `on_dead_letter` hook of the subscriber whose queue the dead letter came from,
    found by the event's task name (the dispatcher of its event type) and that queue."""
    task = _consumer_task(message.event_type)
    of_queue = getattr(task, "subscription_of_queue", None)
    subscription = of_queue(message.queue) if of_queue is not None else None
    hook = subscription.dead_letter_hook if subscription is not None else None
    if hook is None or message.envelope is None:
        return False
    try:
        envelope, payload = parse_message(message.envelope)
    except PermanentError:
        return False
    row.consumer = row.consumer or subscription.consumer
    try:
        with transaction.atomic():
            hook(payload, envelope, WorkerDied(worker_died_error(message)))
    except Exception:
        logger.exception("the dead-letter hook of %s failed for event_id=%s", row.consumer, message.event_id)
        return False
    return True

