"""The transactional outbox: the one way application code publishes an event.

    with transaction.atomic():
        task = Task.objects.create(...)
        publish_event(TaskSubmittedEvent(task_id=task.id, ...))

The outbox row commits with the task or not at all. Right after the commit the event is
published (the fast path); if RabbitMQ is down or the process dies first, the relay
(`manage.py relay_outbox`) publishes it later. Rows are claimed with
`SELECT … FOR UPDATE SKIP LOCKED`, so the fast path and any number of relays never
publish the same row twice at the same time. A crash between RabbitMQ's confirm and the
row's update can still publish a row twice; consumers are idempotent on `event_id`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from fitness import topology
from messaging.broker import publish_envelope
from messaging.correlation import current_correlation_id
from messaging.errors import BrokerUnavailable
from messaging.events import Envelope, Event
from messaging.models import OutboxMessage
from observability import metrics

logger = logging.getLogger(__name__)


def publish_event(event: Event, *, correlation_id: str | None = None) -> OutboxMessage:
    """Record `event` in the outbox within the caller's transaction; publish after commit.

    The correlation id defaults to the current request's (or the current event's).
    """
    envelope = Envelope.wrap(event, correlation_id=correlation_id or current_correlation_id())
    message = OutboxMessage.objects.create(
        event_id=envelope.event_id,
        event_type=envelope.event_type,
        schema_version=envelope.schema_version,
        queue=topology.queue_for_event(envelope.event_type),
        envelope=envelope.as_message_body(),
    )
    message_id = message.pk
    transaction.on_commit(lambda: _publish_after_commit(message_id))
    return message


def _publish_after_commit(message_id: int) -> None:
    try:
        publish_pending(ids=[message_id])
    except Exception:
        # The row is committed; the relay will publish it. The caller's request succeeds.
        logger.exception("outbox fast path failed for message %s; the relay will publish it", message_id)


@dataclass
class PublishReport:
    published: int = 0
    failed: int = 0
    error: str = ""

    def __iadd__(self, other: PublishReport) -> PublishReport:
        self.published += other.published
        self.failed += other.failed
        self.error = other.error or self.error
        return self


def publish_pending(*, ids: Iterable[int] | None = None, batch_size: int = 100) -> PublishReport:
    """Publish one batch of unpublished outbox rows, oldest first.

    Rows another process has claimed are skipped, not waited for. Stops at the first row
    RabbitMQ does not take (it is most likely down) and records the error on that row.
    """
    # Plain SQL rather than the ORM: this runs after every commit that published an
    # event, and building the ORM's queries cost more CPU than the queries themselves.
    # Marking rows published need not wait for the disk (synchronous_commit off): if
    # PostgreSQL lost the mark in a crash, the relay would publish those rows again and
    # consumers, idempotent on event_id, would skip them. The outbox row itself was
    # written by the caller's transaction with full durability.
    table = OutboxMessage._meta.db_table
    only_ids = "AND id = ANY(%s)" if ids is not None else ""
    params = [list(ids), batch_size] if ids is not None else [batch_size]
    report = PublishReport()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"SET LOCAL synchronous_commit TO OFF;"
            f" SELECT id, event_type, event_id, queue, envelope FROM {table}"
            f" WHERE published_at IS NULL {only_ids} ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
            params,
        )
        rows = cursor.fetchall()
        published: list[int] = []
        via = "fast_path" if ids is not None else "relay"
        for row_id, event_type, event_id, queue, envelope in rows:
            body = json.loads(envelope) if isinstance(envelope, str) else envelope
            try:
                publish_envelope(queue, body)
            except BrokerUnavailable as exc:
                cursor.execute(
                    f"UPDATE {table} SET publish_attempts = publish_attempts + 1,"
                    f" last_attempt_at = clock_timestamp(), last_error = %s WHERE id = %s",
                    [str(exc)[:2000], row_id],
                )
                report.failed = 1
                report.error = str(exc)
                metrics.event_publish_failed(event_type, via=via)
                logger.warning(
                    "outbox: %s %s not published (%s pending rows wait): %s",
                    event_type, event_id, len(rows) - len(published), exc,
                )
                break
            published.append(row_id)
            metrics.event_published(event_type, via=via)
        if published:
            cursor.execute(
                f"UPDATE {table} SET published_at = clock_timestamp(), last_attempt_at = clock_timestamp(),"
                f" publish_attempts = publish_attempts + 1 WHERE id = ANY(%s)",
                [published],
            )
        report.published = len(published)
    return report


def relay_outbox(*, batch_size: int = 100) -> PublishReport:
    """Publish everything that is pending now, batch by batch, until done or RabbitMQ fails."""
    report = PublishReport()
    while True:
        batch = publish_pending(batch_size=batch_size)
        report += batch
        if batch.failed or batch.published < batch_size:
            return report


def prune_outbox(*, older_than: timedelta) -> int:
    """Delete published rows older than `older_than`; unpublished rows are never pruned."""
    cutoff = timezone.now() - older_than
    deleted, _ = OutboxMessage.objects.filter(published_at__lt=cutoff).delete()
    return deleted


def outbox_backlog() -> tuple[int, timedelta | None]:
    """How many rows wait to be published, and how old the oldest one is."""
    pending = OutboxMessage.objects.filter(published_at__isnull=True)
    oldest = pending.order_by("pk").values_list("created_at", flat=True).first()
    return pending.count(), (timezone.now() - oldest if oldest else None)
