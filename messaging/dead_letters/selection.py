"""Choosing dead letters: a `Selection`, and what the history says waits in the `.dlq`s.

Taking a message from a quorum queue and returning it counts as a delivery; RabbitMQ 4
drops a message delivered more than its delivery limit (20 by default). So `dlq list` and
`dlq show` read the history the archiver writes (body, headers, error, deaths: everything
they display), and ask RabbitMQ only how many messages each `.dlq` holds (a passive
declare, which delivers nothing). A dead letter the archiver has not recorded yet shows
in that count only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Max, Min
from django.utils import timezone

from fitness import topology
from messaging.dead_letters.messages import DeadLetterMessage, dead_letter_of_record
from messaging.dead_letters.sweep import broker_channel, message_count
from messaging.models import DeadLetter


@dataclass(frozen=True)
class Selection:
    """Which dead letters an operation applies to; every given criterion must match.

    Empty criteria match everything, so `Selection()` is "all dead letters of all queues".
    """

    queues: tuple[str, ...] = ()  # work queue names
    event_ids: frozenset[str] = frozenset()
    event_types: frozenset[str] = frozenset()
    older_than: timedelta | None = None  # dead-lettered at least this long ago
    # exactly these (queue, event_id) pairs, e.g. what a confirmation prompt showed
    only: frozenset[tuple[str, str]] | None = None

    def __post_init__(self) -> None:
        for name in self.queues:
            topology.work_queue(name)  # UnknownRoute names the known ones
        object.__setattr__(self, "event_ids", frozenset(str(i).strip().lower() for i in self.event_ids))

    def work_queues(self) -> list[topology.WorkQueue]:
        return [q for q in topology.WORK_QUEUES if not self.queues or q.name in self.queues]

    def matches(self, message: DeadLetterMessage, now: datetime) -> bool:
        if self.event_ids and message.event_id not in self.event_ids:
            return False
        if self.event_types and message.event_type not in self.event_types:
            return False
        if self.only is not None and (message.queue, message.event_id) not in self.only:
            return False
        if self.older_than is not None:
            return message.dead_at is not None and message.dead_at <= now - self.older_than
        return True


@dataclass(frozen=True)
class QueueSummary:
    queue: str  # the `.dlq`
    work_queue: str
    count: int  # messages in the .dlq, as RabbitMQ counts them
    recorded: int  # dead letters the history holds as still in the .dlq
    oldest: datetime | None
    newest: datetime | None


def waiting_records(selection: Selection):
    rows = DeadLetter.objects.still_dead_lettered().filter(deaths__gt=0)
    rows = rows.filter(queue__in=[q.name for q in selection.work_queues()])
    if selection.event_ids:
        rows = rows.filter(event_id__in=selection.event_ids)
    if selection.event_types:
        rows = rows.filter(event_type__in=selection.event_types)
    if selection.only is not None:
        rows = rows.filter(event_id__in={event_id for _, event_id in selection.only})
    return rows


def dead_letter_summaries(*, selection: Selection | None = None) -> list[QueueSummary]:
    """Per dead-letter queue: how many messages wait, and when the oldest and newest died."""
    selection = selection or Selection()
    summaries = []
    with broker_channel() as channel:
        counts = {q.name: message_count(channel, q.dead_letter_queue_name) for q in selection.work_queues()}
    stats = {
        row["queue"]: row
        for row in waiting_records(selection).values("queue").annotate(
            recorded=Count("id"), oldest=Min("last_dead_at"), newest=Max("last_dead_at"))
    }
    for work_queue in selection.work_queues():
        recorded = stats.get(work_queue.name, {})
        summaries.append(QueueSummary(
            queue=work_queue.dead_letter_queue_name, work_queue=work_queue.name, count=counts[work_queue.name],
            recorded=recorded.get("recorded", 0), oldest=recorded.get("oldest"), newest=recorded.get("newest"),
        ))
    return summaries


def dead_letters_browse(*, selection: Selection | None = None, limit: int = 1000) -> list[DeadLetterMessage]:
    """The dead letters that match and are still in their `.dlq`, from their history."""
    selection = selection or Selection()
    now = timezone.now()
    found: list[DeadLetterMessage] = []
    for row in waiting_records(selection).order_by("last_dead_at", "id").iterator():
        message = dead_letter_of_record(row)
        if selection.matches(message, now):
            found.append(message)
            if len(found) >= limit:
                break
    return found


def join_records(messages: list[DeadLetterMessage]) -> None:
    if not messages:
        return
    rows = DeadLetter.objects.filter(event_id__in={m.event_id for m in messages})
    by_key = {(row.queue, row.event_id): row for row in rows}
    for message in messages:
        message.record = by_key.get((message.queue, message.event_id))

