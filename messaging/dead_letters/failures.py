"""The consumer's record of why it gave up on an event, kept for the dead letter's history.

The consumers' hot path (`EventConsumerTask.on_failure`) imports this module alone: it needs
the `DeadLetter` row and nothing of parsing, the queues or replaying. See `messaging.dead_letters`
(why the error is in PostgreSQL).
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from messaging.models import DeadLetter


def consumer_failure_record(*, queue: str, event_id: str, event_type: str, consumer: str, error: str) -> None:
    """The consumer gave up on an event: keep its error for the dead letter's history.

    Called by the consumer (`EventConsumerTask.on_failure`) before the message is rejected,
    so the row exists when the archiver's copy arrives.
    """
    with transaction.atomic():
        row, _ = DeadLetter.objects.select_for_update().get_or_create(
            queue=queue, event_id=str(event_id).lower(), defaults={"event_type": event_type}
        )
        row.consumer = consumer[:200]
        row.error = error[:10_000]
        row.failed_at = timezone.now()
        row.event_type = row.event_type or event_type
        row.save()
