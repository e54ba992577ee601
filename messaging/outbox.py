"""The transactional outbox: the one way application code publishes an event.

    with transaction.atomic():
        task = Task.objects.create(...)
        publish_event(TaskSubmittedEvent(task_id=task.id, ...))

The outbox row commits with the task or not at all, and that commit is the durable
publish: the request never talks to RabbitMQ. Right after the commit, one statement sends
a PostgreSQL NOTIFY on OUTBOX_CHANNEL (`notify_relays`); the relay (`manage.py
relay_outbox`, always running, messaging/relay.py) LISTENs, wakes at once and publishes the
committed rows in batches with pipelined publisher confirms. It
also scans every few seconds, so a lost notification (a relay restarting) only delays.
Rows are claimed with `SELECT … FOR UPDATE SKIP LOCKED` and stay locked while their batch
is published, so any number of relays never publish the same row twice at the same time.
A crash between RabbitMQ's confirm and the row's update can still publish a row twice;
consumers are idempotent on `event_id`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from fitness import topology
from messaging.broker import publish_batch
from messaging.correlation import current_correlation_id
from messaging.events import Envelope, Event
from messaging.models import OutboxMessage
from observability import metrics
from observability.stats_cache import cached_for_stats

logger = logging.getLogger(__name__)

# The PostgreSQL channel the relay LISTENs on; the payload is empty (the relay claims by scan).
OUTBOX_CHANNEL = "fitness_outbox"

_TABLE = OutboxMessage._meta.db_table
# Plain SQL rather than `objects.create`: this runs in every request that publishes, and the
# ORM's save costs more CPU than the statement itself.
_COLUMNS = (
    f"{_TABLE} (event_id, event_type, schema_version, queue, envelope, created_at,"
    f" publish_attempts, last_error, refusals, retried_by, discarded_by, discard_reason)"
)
_DEFAULTS = "0, '', 0, '', '', ''"  # publish_attempts, last_error, refusals, retried_by, discarded_by, discard_reason
_VALUES = f"(%s, %s, %s, %s, %s, %s, {_DEFAULTS})"
_INSERT = f"INSERT INTO {_COLUMNS} VALUES {_VALUES} RETURNING id"
# The relays' wake-up, in a transaction of its own after the commit that wrote the rows, not in
# it: PostgreSQL takes a cluster-wide lock to queue a transaction's notifications at its commit
# and holds it until the commit is on disk, so writing transactions that notify commit one
# behind another (pgbench, 16 clients: about 3,000 commits/s with the NOTIFY inside, 9,000
# without; benchmarks/api_submit.py's p99). This transaction writes nothing but the
# notification, so it need not wait for the disk; if the process dies before sending it, the
# relays' scan finds the rows a few seconds later.
_NOTIFY = "SELECT set_config('synchronous_commit', 'off', true), pg_notify(%s, '')"


def publish_event(event: Event, *, correlation_id: str | None = None) -> OutboxMessage:
    """Record `event` in the outbox within the caller's transaction; the relay publishes it after commit.

    The correlation id defaults to the current request's (or the current event's).
    Nothing here waits for RabbitMQ, whatever state it is in.
    """
    message, params = _outbox_message(event, correlation_id)
    staged = getattr(connection, "_outbox_staged", None)
    if staged is not None and staged.depth == len(connection.atomic_blocks):
        staged.messages.append((message, params))  # written by the consumer's closing statement
        return message
    with connection.cursor() as cursor:
        cursor.execute(_INSERT, params)
        message.pk = cursor.fetchone()[0]
    message._state.adding = False
    message._state.db = connection.alias
    _notify_relays_after_commit()
    return message


def _outbox_message(event: Event, correlation_id: str | None) -> tuple[OutboxMessage, list]:
    """The event's outbox row (unsaved) and the parameters of its `_VALUES`."""
    envelope = Envelope.wrap(event, correlation_id=correlation_id or current_correlation_id())
    body = envelope.as_message_body()
    message = OutboxMessage(
        event_id=envelope.event_id,
        event_type=envelope.event_type,
        schema_version=envelope.schema_version,
        queue=topology.routing_key_for_event(envelope.event_type),  # the routing key: the event type
        envelope=body,
        created_at=timezone.now(),
    )
    return message, [message.event_id, message.event_type, message.schema_version, message.queue,
                     json.dumps(body), message.created_at]


@dataclass
class EventRow:
    """An event's outbox row as one CTE of the caller's own statement (`event_row_cte`)."""

    message: OutboxMessage
    sql: str  # `name AS (INSERT INTO outbox … SELECT … FROM rows_of RETURNING id)`
    params: list

    def written(self, row_id: int | None, **ids: int) -> None:
        """The statement ran: `row_id` is the outbox row's id, or None when `rows_of` was empty
        (nothing to publish), and `ids` the inserted values of `event_row_cte`'s `ids`. The
        relays hear of the row after the commit."""
        if row_id is None:
            return
        self.message.pk = row_id
        self.message.envelope["payload"].update(ids)
        self.message._state.adding, self.message._state.db = False, connection.alias
        _notify_relays_after_commit()


def event_row_cte(
    event_type: type[Event], fields: dict[str, Any], *, name: str, rows_of: str, ids: dict[str, str],
    correlation_id: str | None = None,
) -> EventRow:
    """`publish_event` for an event about a row that the caller's statement inserts, in that statement.

    The event's outbox row becomes one more CTE, `name AS (INSERT … SELECT … FROM rows_of)`, of a
    WITH statement whose CTE `rows_of` inserts the row the event is about. `ids` maps each payload
    field that only the insert knows to the column of `rows_of` that holds it ({"task_id": "id"}).
    The event is validated from `fields` with 1 standing in for each of those ids, and the
    envelope gets the inserted values. There is one outbox row per row of `rows_of`, so none
    when its INSERT … ON CONFLICT DO NOTHING inserted nothing: the event is published exactly
    when the row is made. In autocommit the whole statement is one transaction, which saves
    the BEGIN and COMMIT round trips of `transaction.atomic` (the upload: tasks.services).
    Hand the row's id (or None) and the ids to `EventRow.written` once the statement ran.
    """
    unknown = set(ids) - set(event_type.model_fields)
    if unknown:
        raise ValueError(f"{event_type.__name__} has no field {', '.join(sorted(unknown))}")
    event = event_type(**fields, **dict.fromkeys(ids, 1))
    message, params = _outbox_message(event, correlation_id)
    envelope, envelope_params = "%s::jsonb", [params[4]]
    for field_name, column in ids.items():
        envelope = f"jsonb_set({envelope}, %s, to_jsonb({rows_of}.{connection.ops.quote_name(column)}))"
        envelope_params.append(["payload", field_name])
    return EventRow(
        message,
        f"{name} AS (INSERT INTO {_COLUMNS} SELECT %s, %s, %s, %s, {envelope}, %s, {_DEFAULTS}"
        f" FROM {rows_of} RETURNING id)",
        [*params[:4], *envelope_params, params[5]],
    )


@dataclass
class StagedEvents:
    """Events published in a consumer's transaction whose outbox rows wait for its closing statement."""

    depth: int  # the transaction's atomic block: a publish in a savepoint within it is written at once
    messages: list[tuple[OutboxMessage, list]] = field(default_factory=list)
    done: bool = False

    def as_cte(self, name: str) -> tuple[str, list]:
        """`name AS (INSERT … RETURNING …)` for a WITH list, and its parameters ('' when none)."""
        if not self.messages:
            return "", []
        values = ", ".join([_VALUES] * len(self.messages))
        return (f"{name} AS (INSERT INTO {_COLUMNS} VALUES {values} RETURNING id, event_id)",
                [value for _, params in self.messages for value in params])

    def written(self, ids_by_event: dict | None) -> None:
        """The closing statement wrote the rows (`ids_by_event`: event id -> row id); the relays
        hear of them after the commit."""
        for message, _ in self.messages:
            message.pk = (ids_by_event or {}).get(str(message.event_id))
            message._state.adding, message._state.db = False, connection.alias
        if self.messages:
            _notify_relays_after_commit()
        self.done = True

    def write(self) -> None:
        """Write the rows in a statement of their own (when no closing statement took them)."""
        cte, params = self.as_cte("staged")
        ids_by_event = None
        if cte:
            with connection.cursor() as cursor:
                cursor.execute(f"WITH {cte} SELECT json_object_agg(event_id, id) FROM staged", params)
                ids_by_event = cursor.fetchone()[0]
        self.written(ids_by_event)


@contextmanager
def staged_publishes():
    """Within the current atomic block, `publish_event` holds its rows back for one later
    statement (`StagedEvents.as_cte`, then `written`), which saves a round trip per event.

    For the base consumer (messaging.consumers), whose closing statement writes the
    idempotency record: an event a handler publishes goes into that statement. A publish
    inside a savepoint of the handler is written at once, so a rollback to the savepoint
    takes it back as usual. The caller must write the staged rows before the commit.
    """
    previous = getattr(connection, "_outbox_staged", None)
    staged = connection._outbox_staged = StagedEvents(depth=len(connection.atomic_blocks))
    try:
        yield staged
        if not staged.done:
            staged.write()  # never left behind, whatever the caller did
    finally:
        connection._outbox_staged = previous


def _notify_relays_after_commit() -> None:
    """Once per transaction, however many events it publishes: `notify_relays` after its commit
    (at once outside a transaction; never after a rollback, which drops the callback)."""
    # Django keeps a transaction's callbacks as (savepoint ids, callback, robust) in run_on_commit
    if not any(entry[1] is notify_relays for entry in connection.run_on_commit):
        # robust: the commit is the publish; a failed wake-up only leaves the rows to the scan
        transaction.on_commit(notify_relays, robust=True)


def notify_relays() -> None:
    """Wake the relays (their LISTEN on OUTBOX_CHANNEL): committed rows wait for them."""
    with connection.cursor() as cursor:
        cursor.execute(_NOTIFY, [OUTBOX_CHANNEL])


@dataclass
class PublishReport:
    published: int = 0
    refused: int = 0  # rows RabbitMQ refused, each backed off alone
    failed: int = 0  # 1 when the batch stopped because RabbitMQ could not be used
    error: str = ""

    def __iadd__(self, other: PublishReport) -> PublishReport:
        self.published += other.published
        self.refused += other.refused
        self.failed += other.failed
        self.error = other.error or self.error
        return self


# The one claim query (relay, operator retries): rows neither published nor discarded,
# and not backing off after a refusal.
_CLAIMABLE = (
    "published_at IS NULL AND discarded_at IS NULL"
    " AND (next_attempt_at IS NULL OR next_attempt_at <= clock_timestamp())"
)


def publish_pending(*, ids: Iterable[int] | None = None, batch_size: int = 100) -> PublishReport:
    """Publish one batch of unpublished outbox rows, oldest first, with pipelined confirms.

    Rows another process has claimed are skipped, not waited for, and so are rows backing
    off after a refusal; the claimed rows stay locked until their batch is settled. A row
    RabbitMQ refuses (MessageRefused: unroutable, nacked) gets its error and a
    `next_attempt_at` (exponential, capped) and the others are published; when RabbitMQ
    cannot be used at all (BrokerUnavailable: no connection, confirms that did not come
    within the timeout) the rows it did not confirm record the error and the caller backs off.
    """
    # Plain SQL rather than the ORM: building the ORM's queries cost more CPU than the
    # queries themselves. Marking rows published need not wait for the disk
    # (synchronous_commit off): if PostgreSQL lost the mark in a crash, the relay would
    # publish those rows again and consumers, idempotent on event_id, would skip them.
    # The outbox row itself was written by the caller's transaction with full durability.
    only_ids = "AND id = ANY(%s)" if ids is not None else ""
    params = [list(ids), batch_size] if ids is not None else [batch_size]
    report = PublishReport()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"SET LOCAL synchronous_commit TO OFF;"
            f" SELECT id, event_type, event_id, queue, envelope FROM {_TABLE}"
            f" WHERE {_CLAIMABLE} {only_ids} ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
            params,
        )
        rows = cursor.fetchall()
        if not rows:
            return report
        result = publish_batch([
            (queue, json.loads(envelope) if isinstance(envelope, str) else envelope, None)
            for _, _, _, queue, envelope in rows
        ])
        for index, why in result.refused.items():
            row_id, event_type, event_id, _, _ = rows[index]
            _back_off(cursor, _TABLE, row_id, why)
            metrics.event_publish_failed(event_type, via="relay")
            logger.warning("outbox: %s %s refused by RabbitMQ, backed off: %s", event_type, event_id, why)
        published = [rows[index][0] for index in result.confirmed]
        for index in result.confirmed:
            metrics.event_published(rows[index][1], via="relay")
        if result.error:
            settled = set(result.confirmed) | set(result.refused)
            waiting = [row for index, row in enumerate(rows) if index not in settled]
            cursor.execute(
                f"UPDATE {_TABLE} SET publish_attempts = publish_attempts + 1,"
                f" last_attempt_at = clock_timestamp(), last_error = %s WHERE id = ANY(%s)",
                [result.error[:2000], [row[0] for row in waiting]],
            )
            for row in waiting:
                metrics.event_publish_failed(row[1], via="relay")
            report.failed = 1
            report.error = result.error
            logger.warning("outbox: %s event(s) not published, they wait: %s", len(waiting), result.error)
        if published:
            cursor.execute(
                f"UPDATE {_TABLE} SET published_at = clock_timestamp(), last_attempt_at = clock_timestamp(),"
                f" publish_attempts = publish_attempts + 1 WHERE id = ANY(%s)",
                [published],
            )
        report.published = len(published)
        report.refused = len(result.refused)
    return report


def _back_off(cursor, table: str, row_id: int, error: str) -> None:
    """Record a refusal; the row waits OUTBOX_REFUSED_BACKOFF_SECONDS × 2^(refusals before), capped."""
    cursor.execute(
        f"UPDATE {table} SET publish_attempts = publish_attempts + 1, refusals = refusals + 1,"
        # one clock reading for both: the recorded wait is exactly the backoff
        f" last_attempt_at = statement_timestamp(), last_error = %s,"
        f" next_attempt_at = statement_timestamp()"
        f"   + make_interval(secs => LEAST(%s * power(2, LEAST(refusals, 30)), %s))"
        f" WHERE id = %s",
        [error[:2000], settings.OUTBOX_REFUSED_BACKOFF_SECONDS, settings.OUTBOX_REFUSED_BACKOFF_MAX_SECONDS, row_id],
    )


def relay_outbox(*, batch_size: int = 100) -> PublishReport:
    """Publish everything that is pending now, batch by batch, until done or RabbitMQ fails."""
    report = PublishReport()
    while True:
        batch = publish_pending(batch_size=batch_size)
        report += batch
        if batch.failed or batch.published + batch.refused < batch_size:
            return report


def prune_outbox(*, older_than: timedelta) -> int:
    """Delete published rows older than `older_than`; unpublished rows are never pruned."""
    cutoff = timezone.now() - older_than
    deleted, _ = OutboxMessage.objects.filter(published_at__lt=cutoff).delete()
    return deleted


@cached_for_stats
def outbox_backlog() -> tuple[int, timedelta | None]:
    """How many rows wait to be published (backing-off ones too, discarded ones not), and the oldest one's age.

    Read at most once per STATS_CACHE_SECONDS in a process (observability.stats_cache), however
    often /metrics is scraped.
    """
    pending = OutboxMessage.objects.pending()
    oldest = pending.order_by("pk").values_list("created_at", flat=True).first()
    return pending.count(), (timezone.now() - oldest if oldest else None)


@cached_for_stats
def outbox_refused_count() -> int:
    """Pending rows RabbitMQ refused, each backing off (once per STATS_CACHE_SECONDS, as `outbox_backlog`)."""
    return OutboxMessage.objects.failing().count()


# --- operator actions on rows that keep failing (`manage.py outbox`) ---------------------


class OutboxOperationError(ValueError):
    """An operator's request names rows that do not exist or cannot take the action; nothing changed."""


@dataclass(frozen=True)
class RetryOutcome:
    message: OutboxMessage
    result: str  # "published", "refused again", "still pending" (RabbitMQ down), "would retry"


def _select_for(action: str, ids: Iterable[int]) -> list[OutboxMessage]:
    """The rows `ids`, locked, each able to take `action`; else OutboxOperationError naming every bad id."""
    wanted = list(dict.fromkeys(ids))
    rows = {row.pk: row for row in OutboxMessage.objects.select_for_update().filter(pk__in=wanted)}
    problems = []
    for pk in wanted:
        row = rows.get(pk)
        if row is None:
            problems.append(f"no outbox message {pk}")
        elif row.published_at:
            problems.append(f"{pk}: already published at {row.published_at:%Y-%m-%d %H:%M:%S}")
        elif row.discarded_at:
            problems.append(f"{pk}: discarded by {row.discarded_by or '?'} at {row.discarded_at:%Y-%m-%d %H:%M:%S}")
    if problems:
        raise OutboxOperationError(f"cannot {action}, nothing changed: " + "; ".join(problems))
    return [rows[pk] for pk in wanted]


def outbox_retry(*, ids: Iterable[int] | None = None, by: str, dry_run: bool = False) -> list[RetryOutcome]:
    """Publish the rows `ids` now (None: every failing row), whatever their `next_attempt_at`.

    Records who asked (`retried_by`, `retried_at`), then publishes them through the same
    claim as the relay; each outcome says whether RabbitMQ took it this time.
    """
    with transaction.atomic():
        if ids is None:
            ids = list(OutboxMessage.objects.failing().order_by("pk").values_list("pk", flat=True))
        rows = _select_for("retry", ids)
        if dry_run:
            return [RetryOutcome(row, "would retry") for row in rows]
        OutboxMessage.objects.filter(pk__in=[row.pk for row in rows]).update(
            next_attempt_at=None, retried_at=timezone.now(), retried_by=by[:150],
        )
    if rows:
        publish_pending(ids=[row.pk for row in rows], batch_size=len(rows))
    after = OutboxMessage.objects.in_bulk([row.pk for row in rows])
    outcomes = []
    for row in rows:
        now = after[row.pk]
        if now.published_at:
            result = "published"
        elif now.refusals > row.refusals:
            result = "refused again"
        else:
            result = "still pending"
        outcomes.append(RetryOutcome(now, result))
    return outcomes


def outbox_discard(*, ids: Iterable[int], reason: str, by: str, dry_run: bool = False) -> list[OutboxMessage]:
    """Mark the rows `ids` discarded (kept, never published), with who, when and why."""
    if not reason.strip():
        raise OutboxOperationError("cannot discard, nothing changed: give a reason")
    with transaction.atomic():
        rows = _select_for("discard", ids)
        if not dry_run:
            OutboxMessage.objects.filter(pk__in=[row.pk for row in rows]).update(
                discarded_at=timezone.now(), discarded_by=by[:150], discard_reason=reason.strip(),
            )
            rows = list(OutboxMessage.objects.filter(pk__in=[row.pk for row in rows]).order_by("pk"))
    return rows
