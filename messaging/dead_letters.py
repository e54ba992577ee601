"""Dead letters: what died, why, and sending it back (DG-04: nothing lost, nothing done twice).

Where a dead letter lives. RabbitMQ dead-letters a message that its consumer gave up on
(`rejected`: retries exhausted, or a permanent error) or that kept killing its workers
(`delivery_limit`) to the dead-letter exchange, which copies it to two queues (see
`fitness.topology`):

* `<queue>.dlq` holds the message itself until an operator replays or purges it: a replay
  moves exactly that message back, body and all, and two operators replaying at once
  never get the same message.
* `dead-letters.archive` is consumed by the archiver (`manage.py archive_dead_letters`),
  which records each death in PostgreSQL (`DeadLetter`, with the body byte for byte and
  the headers): the history stays searchable in the admin after the message is replayed
  or purged. The archiver also runs the consumer's dead-letter hook for a
  `delivery_limit` death: the worker died, so the consumer's own failure handler never
  ran (ml marks the task `failed`).

Browsing reads the history, never the queues. Taking a message from a quorum queue and
returning it counts as a delivery, and RabbitMQ 4 drops a message delivered more often
than the queue's delivery limit (20 unless set): browsing a `.dlq` by taking its messages
would, in time, delete them. So `dlq list`/`show` (and every dry run) read `DeadLetter`
rows, and replay and purge choose there and then take exactly the chosen messages from
the `.dlq`, returning the others with `basic.nack`. The `.dlqs` and the archive queue
have no delivery limit either (see `fitness.topology`).

A message that is not an event envelope (no envelope, no Celery task id: a body published
by hand) is named by `body_id`, derived from its bytes, in both copies; it is shown as it
is and never replayed (there is no event to publish).

Why the error is in PostgreSQL. Celery rejects a failed message with `basic.reject`, which
cannot carry a reason; the consumer records its exception (`consumer_failure_record`,
called from `EventConsumerTask.on_failure`) on the same `DeadLetter` row, keyed by queue
and event id, before the message is rejected; `dlq show` shows it with the rest of the row.

Replaying. Each selected dead letter is taken from its `.dlq` (unacknowledged), published
again through the normal path (`messaging.broker.publish_envelope`: the events exchange,
routing key = its work queue, persistent, mandatory, publisher confirm) as a fresh Celery
message whose retry count is 0, and acknowledged in the `.dlq` only after RabbitMQ
confirmed the new copy. A crash in between leaves the dead letter in the `.dlq` (RabbitMQ
returns unacknowledged messages) and at worst the event published twice, which consumers
skip by `event_id` (`ProcessedEvent`). Messages not selected are returned untouched, and a
sweep stops once it holds every message it was sent for.

Every function here is what `manage.py dlq` and the admin's "Replay selected" call.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from amqp import spec as amqp_spec
from django.db import transaction
from django.db.models import Count, F, Max, Min
from django.utils import timezone
from pydantic import ValidationError

from fitness import topology
from fitness.celery import app as celery_app
from messaging.broker import publish_envelope
from messaging.errors import BrokerUnavailable, PermanentError
from messaging.events import Envelope, parse_message
from messaging.models import DeadLetter
from messaging.retention import replay_refusal
from observability import metrics

logger = logging.getLogger("messaging.dead_letters")

# The header a replay adds: how many times this event has been replayed. It also tells
# one death of an event from the next in the archive (see `_death_key`).
REPLAY_HEADER = "x-fitness-replays"


# --- reading a dead letter -----------------------------------------------------------------
@dataclass(frozen=True)
class Death:
    """One entry of RabbitMQ's `x-death` header (newest first in the header)."""

    queue: str
    reason: str
    count: int
    time: datetime | None


@dataclass
class DeadLetterMessage:
    """A dead letter as found in a `.dlq` (or in the archive queue, or in its history)."""

    queue: str  # the work queue it died in
    event_id: str  # the envelope's event_id, else the Celery task id, else `body_id(raw_body)`
    event_type: str
    envelope: dict | None  # the event envelope; None when the body is not one
    body: Any  # the decoded message body
    headers: dict
    reason: str  # why RabbitMQ dead-lettered it: rejected, delivery_limit, ...
    deaths: int  # RabbitMQ's count of deaths from the work queue, in this message's history
    attempts: int  # deliveries to a consumer before it died
    dead_at: datetime | None  # when it left the work queue (x-death, second precision)
    first_failed_at: datetime | None  # the earliest death in its history (a retry's delay, or dead_at)
    replays: int = 0  # how often it had been replayed before this death
    delivery_tag: int | None = None
    record: DeadLetter | None = None  # its history in PostgreSQL, when joined
    raw_body: bytes | None = None  # the body byte for byte, when known
    content_type: str = ""
    content_encoding: str = ""

    @property
    def replayable(self) -> bool:
        return self.envelope is not None

    @property
    def error(self) -> str:
        return self.record.error if self.record else ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.queue, self.event_id)


def parse_deaths(headers: dict) -> list[Death]:
    deaths = []
    for entry in headers.get("x-death") or []:
        if not isinstance(entry, dict):
            continue
        when = entry.get("time")
        if isinstance(when, str):  # as the history keeps headers (JSON)
            try:
                when = datetime.fromisoformat(when)
            except ValueError:
                when = None
        if isinstance(when, datetime) and when.tzinfo is None:
            when = when.replace(tzinfo=UTC)  # AMQP timestamps are UTC seconds
        deaths.append(Death(
            queue=str(entry.get("queue", "")), reason=str(entry.get("reason", "")),
            count=int(entry.get("count") or 0), time=when if isinstance(when, datetime) else None,
        ))
    return deaths


def decode_body(raw: bytes | str, content_type: str | None) -> Any:
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes | bytearray) else raw
    if content_type in (None, "", "application/json"):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def envelope_of(body: Any) -> dict | None:
    """The event envelope inside a Celery message body ([args, {"event": envelope}, embed])."""
    kwargs = body[1] if isinstance(body, list) and len(body) >= 2 else None
    candidate = kwargs.get("event") if isinstance(kwargs, dict) else None
    try:
        Envelope.model_validate(candidate)
    except ValidationError:
        return None
    return candidate


# The namespace of the ids of dead letters that carry none (not an envelope, no task id).
BODY_ID_NAMESPACE = uuid.UUID("5f0c7c1e-3b8e-4d2a-9a57-6d0f1c2b4e10")


def body_id(raw: bytes) -> str:
    """The id of a dead letter that has none: a UUID derived from its body's SHA-256.

    Both copies of a dead letter (the `.dlq`'s and the archive's) and every redelivery of
    them get the same id, so the history and `manage.py dlq --event-id` can name it. Two
    messages with the same body are the same dead letter, twice (two deaths of one row).
    """
    return str(uuid.uuid5(BODY_ID_NAMESPACE, hashlib.sha256(raw).hexdigest()))


def parse_dead_letter(queue: str, headers: dict | None, body: Any, *, delivery_tag: int | None = None,
                      raw_body: bytes | None = None, content_type: str = "", content_encoding: str = ""
                      ) -> DeadLetterMessage:
    """Describe a dead letter of work queue `queue` from its headers and decoded body."""
    headers = dict(headers or {})
    envelope = envelope_of(body)
    deaths = parse_deaths(headers)
    own = next((d for d in deaths if d.queue == queue), deaths[0] if deaths else None)
    reason = own.reason if own else str(headers.get("x-first-death-reason", ""))
    if reason == "delivery_limit":
        try:
            attempts = topology.work_queue(queue).delivery_limit + 1
        except topology.UnknownRoute:
            attempts = 0
    else:
        attempts = int(headers.get("retries") or 0) + 1
    times = [d.time for d in deaths if d.time is not None]
    event_id = str(envelope["event_id"]) if envelope else str(headers.get("id") or "")
    if not event_id:
        event_id = body_id(raw_body if raw_body is not None else json.dumps(body, sort_keys=True).encode())
    return DeadLetterMessage(
        queue=queue,
        event_id=event_id.lower(),
        event_type=str(envelope["event_type"]) if envelope else str(headers.get("task") or ""),
        envelope=envelope,
        body=body,
        headers=headers,
        reason=reason,
        deaths=own.count if own else 0,
        attempts=attempts,
        dead_at=own.time if own else None,
        first_failed_at=min(times) if times else None,
        replays=int(headers.get(REPLAY_HEADER) or 0),
        delivery_tag=delivery_tag,
        raw_body=raw_body,
        content_type=content_type or "",
        content_encoding=content_encoding or "",
    )


def parse_raw_dead_letter(queue: str, headers: dict | None, raw: bytes | str, content_type: str | None,
                          content_encoding: str | None = None, *, delivery_tag: int | None = None
                          ) -> DeadLetterMessage:
    """Describe a dead letter from the message as RabbitMQ delivers it (body as bytes)."""
    raw_bytes = raw.encode() if isinstance(raw, str) else bytes(raw)
    return parse_dead_letter(
        queue, headers, decode_body(raw_bytes, content_type), delivery_tag=delivery_tag, raw_body=raw_bytes,
        content_type=content_type or "", content_encoding=content_encoding or "",
    )


def jsonable_headers(value: Any) -> Any:
    """AMQP headers as JSON can keep them: timestamps as ISO-8601, bytes as text."""
    if isinstance(value, dict):
        return {str(k): jsonable_headers(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable_headers(v) for v in value]
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")  # jsonb cannot hold NUL
    if value is None or isinstance(value, int | float | bool):
        return value
    return str(value)


def dead_letter_of_record(row: DeadLetter) -> DeadLetterMessage:
    """A dead letter as its history in PostgreSQL describes it (its latest death)."""
    if row.body is not None:
        message = parse_raw_dead_letter(row.queue, row.headers, bytes(row.body), row.content_type,
                                        row.content_encoding)
    else:  # recorded before bodies were kept: the envelope (or body) is all there is
        body = [[], {"event": row.envelope}, {}] if envelope_of([[], {"event": row.envelope}]) else row.envelope
        message = parse_dead_letter(row.queue, row.headers, body)
    message.event_id = row.event_id
    message.event_type = row.event_type or message.event_type
    message.reason = row.reason or message.reason
    message.attempts = row.attempts or message.attempts
    message.deaths = row.deaths
    message.dead_at = row.last_dead_at or message.dead_at
    message.first_failed_at = message.first_failed_at or row.first_dead_at
    message.record = row
    return message


# --- choosing dead letters -------------------------------------------------------------------
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


# --- the broker side ---------------------------------------------------------------------------
@contextmanager
def _broker_channel() -> Iterator[Any]:
    connection = celery_app.connection_for_write()
    try:
        try:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0)
        except Exception as exc:
            raise BrokerUnavailable(f"cannot reach RabbitMQ at {connection.as_uri()}: {exc}") from exc
        yield connection.channel()
    finally:
        connection.release()


def _message_count(channel: Any, name: str) -> int:
    try:
        _, count, _ = channel.queue_declare(name, passive=True)
    except Exception as exc:
        raise BrokerUnavailable(f"the queue {name} does not exist (has `manage.py setup_broker` run?): {exc}") from exc
    return count


def return_to_queue(channel: Any, delivery_tag: int) -> None:
    """Give a message back to its queue untouched: basic.nack with requeue.

    Not basic.reject: from RabbitMQ 4.3 a nack does not count as a failed delivery of a
    quorum queue's message, a reject does. (The `.dlq`s and the archive queue have no
    delivery limit anyway; see fitness.topology.) py-amqp has no basic_nack, so the
    method frame is sent as it is: delivery tag, multiple=False, requeue=True.
    """
    channel.send_method(amqp_spec.Basic.Nack, "Lbb", (delivery_tag, False, True))


Decision = Callable[[DeadLetterMessage], bool]  # True: acknowledge (remove it); False: return it


def _take(work_queue: topology.WorkQueue, wanted: dict[tuple[str, str], int], decide: Decision) -> set:
    """Take the dead letters `wanted` (key -> copies expected) out of `work_queue`'s `.dlq`.

    Messages are taken one by one (the only way AMQP offers); each wanted one goes to
    `decide`, the others are held unacknowledged until the end (so none is seen twice) and
    then returned untouched, as is every message still held when anything fails. The sweep
    stops as soon as every wanted copy was seen, so a replay of one dead letter takes only
    the messages in front of it. Returns the keys found.
    """
    dlq = work_queue.dead_letter_queue_name
    remaining = dict(wanted)
    found: set = set()
    with _broker_channel() as channel:
        waiting = _message_count(channel, dlq)
        held: list[int] = []
        try:
            for _ in range(waiting):
                if not remaining:
                    break
                raw = channel.basic_get(dlq, no_ack=False)
                if raw is None:
                    break
                held.append(raw.delivery_tag)
                message = parse_raw_dead_letter(
                    work_queue.name, raw.headers, raw.body, raw.properties.get("content_type"),
                    raw.properties.get("content_encoding"), delivery_tag=raw.delivery_tag,
                )
                if message.key not in wanted:
                    continue
                found.add(message.key)
                if remaining.get(message.key, 0) > 1:
                    remaining[message.key] -= 1
                else:
                    remaining.pop(message.key, None)
                if decide(message):
                    held.remove(raw.delivery_tag)
                    channel.basic_ack(raw.delivery_tag)
        finally:
            for tag in held:
                return_to_queue(channel, tag)
    return found


# --- browsing: from the history in PostgreSQL, never from the queues ----------------------
# Taking a message from a quorum queue and returning it counts as a delivery; RabbitMQ 4
# drops a message delivered more than its delivery limit (20 by default). So `dlq list` and
# `dlq show` read the history the archiver writes (body, headers, error, deaths: everything
# they display), and ask RabbitMQ only how many messages each `.dlq` holds (a passive
# declare, which delivers nothing). A dead letter the archiver has not recorded yet shows
# in that count only.
@dataclass(frozen=True)
class QueueSummary:
    queue: str  # the `.dlq`
    work_queue: str
    count: int  # messages in the .dlq, as RabbitMQ counts them
    recorded: int  # dead letters the history holds as still in the .dlq
    oldest: datetime | None
    newest: datetime | None


def _waiting_records(selection: Selection):
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
    with _broker_channel() as channel:
        counts = {q.name: _message_count(channel, q.dead_letter_queue_name) for q in selection.work_queues()}
    stats = {
        row["queue"]: row
        for row in _waiting_records(selection).values("queue").annotate(
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
    for row in _waiting_records(selection).order_by("last_dead_at", "id").iterator():
        message = dead_letter_of_record(row)
        if selection.matches(message, now):
            found.append(message)
            if len(found) >= limit:
                break
    return found


def _join_records(messages: list[DeadLetterMessage]) -> None:
    if not messages:
        return
    rows = DeadLetter.objects.filter(event_id__in={m.event_id for m in messages})
    by_key = {(row.queue, row.event_id): row for row in rows}
    for message in messages:
        message.record = by_key.get((message.queue, message.event_id))


# --- replay and purge: chosen in the history, taken from the .dlq --------------------------
@dataclass
class Outcome:
    message: DeadLetterMessage
    action: str  # replayed, would replay, duplicate dropped, skipped: why


@dataclass
class OperationReport:
    outcomes: list[Outcome] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)  # event ids asked for but not in a .dlq
    error: str = ""  # why it stopped early; what was not done is still in the .dlq

    def count(self, action: str) -> int:
        return sum(1 for outcome in self.outcomes if outcome.action == action)

    @property
    def skipped(self) -> int:
        return sum(1 for outcome in self.outcomes if outcome.action.startswith("skipped"))


NOT_AN_ENVELOPE = "skipped: not an event envelope, nothing to publish (see `dlq show`, then purge it)"


def _copies_waiting(message: DeadLetterMessage) -> int:
    row = message.record
    return max(1, row.deaths - row.replays - row.purges) if row else 1


def _operate(selection: Selection, wanted: list[DeadLetterMessage], decide: Decision, report: OperationReport
             ) -> None:
    """Take each of `wanted` (chosen in the history) from its `.dlq` and let `decide` handle it."""
    found: set = set()
    try:
        for work_queue in selection.work_queues():
            mine = {m.key: _copies_waiting(m) for m in wanted if m.queue == work_queue.name}
            if mine:
                found |= _take(work_queue, mine, decide)
    except BrokerUnavailable as exc:
        report.error = str(exc)
    if not report.error:
        # recorded as waiting, but no longer in its .dlq (removed by other means than `dlq`)
        report.not_found += [m.event_id for m in wanted if m.key not in found]


def _not_asked_for(selection: Selection, report: OperationReport, chosen: list[DeadLetterMessage]) -> None:
    report.not_found = sorted(set(report.not_found) | (selection.event_ids - {m.event_id for m in chosen}))


def dead_letters_replay(
    *, selection: Selection, dry_run: bool = False, replayed_by: str = "", limit: int | None = None
) -> OperationReport:
    """Publish the selected dead letters to their work queues again, each exactly once.

    The dead letters are chosen in the history (what `dlq show` shows), then taken from
    their `.dlq`: a message is acknowledged there only after RabbitMQ confirmed the new
    copy. A second copy of an event already replayed in this run is dropped (it is the same
    event). A body that is not an event envelope cannot be replayed: it is not touched, and
    reported as skipped. If RabbitMQ refuses a publish, the replay stops there and says so
    in `error`.
    """
    report = OperationReport()
    chosen = dead_letters_browse(selection=selection, limit=limit if limit is not None else 1_000_000)
    replayable = []
    now = timezone.now()
    for message in chosen:
        if not message.replayable:
            report.outcomes.append(Outcome(message, NOT_AN_ENVELOPE))
        elif too_old := replay_refusal(message.envelope, now=now):  # its dedup record may be pruned
            report.outcomes.append(Outcome(message, too_old))
        else:
            replayable.append(message)
    if dry_run:
        report.outcomes += [Outcome(message, "would replay") for message in replayable]
        _not_asked_for(selection, report, chosen)
        return report
    replayed: set[tuple[str, str]] = set()

    def replay(message: DeadLetterMessage) -> bool:
        if message.key in replayed:
            report.outcomes.append(Outcome(message, "duplicate dropped"))
            return True
        if message.envelope is None:  # the history said it was an envelope; the queue's copy is not
            report.outcomes.append(Outcome(message, NOT_AN_ENVELOPE))
            return False
        replayed.add(message.key)
        publish_envelope(message.queue, message.envelope, headers={REPLAY_HEADER: message.replays + 1})
        metrics.event_published(message.event_type or "unknown", via="replay")
        report.outcomes.append(Outcome(message, "replayed"))
        return True  # acknowledged only now: RabbitMQ has confirmed the new copy

    _operate(selection, replayable, replay, report)
    for outcome in report.outcomes:
        if outcome.action == "replayed":
            _record_outcome(outcome.message, replayed_by=replayed_by or "unknown")
    _not_asked_for(selection, report, chosen)
    _join_records([o.message for o in report.outcomes])
    return report


def dead_letters_purge(*, selection: Selection, dry_run: bool = False, purged_by: str = "") -> OperationReport:
    """Delete the selected dead letters from their `.dlq`s; their history stays in PostgreSQL.

    Chosen in the history like a replay; a dry run touches no queue.
    """
    report = OperationReport()
    chosen = dead_letters_browse(selection=selection, limit=1_000_000)
    if dry_run:
        report.outcomes = [Outcome(message, "would purge") for message in chosen]
        _not_asked_for(selection, report, chosen)
        return report

    def purge(message: DeadLetterMessage) -> bool:
        report.outcomes.append(Outcome(message, "purged"))
        return True

    _operate(selection, chosen, purge, report)
    for outcome in report.outcomes:
        _record_outcome(outcome.message, purged_by=purged_by or "unknown")
    _not_asked_for(selection, report, chosen)
    _join_records([o.message for o in report.outcomes])
    return report


def _row_defaults(message: DeadLetterMessage) -> dict:
    return {
        "event_type": message.event_type,
        "envelope": message.envelope if message.envelope is not None else _jsonable(message.body),
        "reason": message.reason,
        "attempts": message.attempts,
        "first_dead_at": message.dead_at,
        "last_dead_at": message.dead_at,
        **_message_fields(message),
    }


def _message_fields(message: DeadLetterMessage) -> dict:
    """The message itself, as the history keeps it (what `dlq show` displays)."""
    raw = message.raw_body if message.raw_body is not None else json.dumps(message.body).encode()
    return {
        "body": raw,
        "content_type": message.content_type[:100],
        "content_encoding": message.content_encoding[:50],
        "headers": jsonable_headers(message.headers),
    }


def _record_outcome(message: DeadLetterMessage, *, replayed_by: str = "", purged_by: str = "") -> None:
    """Note a replay or purge in the history (creating the row if the archiver has not yet)."""
    if not message.event_id:
        return
    try:
        with transaction.atomic():
            row, _ = DeadLetter.objects.select_for_update().get_or_create(
                queue=message.queue, event_id=message.event_id, defaults=_row_defaults(message)
            )
            now = timezone.now()
            if replayed_by:
                row.replays = F("replays") + 1
                row.replayed_at, row.replayed_by = now, replayed_by[:150]
            if purged_by:
                row.purges = F("purges") + 1
                row.purged_at, row.purged_by = now, purged_by[:150]
            row.save()
    except Exception:  # the broker side is done; a missing history line must not undo it
        logger.exception("could not record the %s of %s %s", "replay" if replayed_by else "purge",
                         message.event_type, message.event_id)


def _jsonable(value: Any) -> Any:
    """`value` as a JSON column can hold it (PostgreSQL's jsonb refuses the character NUL)."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        return repr(value).replace("\x00", "\ufffd")
    return json.loads(text.replace("\\u0000", "\\ufffd")) if "\\u0000" in text else value


# --- the consumer's and the archiver's records -----------------------------------------------
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
            queue=message.queue, event_id=message.event_id, defaults=_row_defaults(message)
        )
        if not created and row.deaths and row.death_key == key:
            return ArchiveResult(row, new_death=False)
        row.deaths += 1
        row.death_key = key
        row.event_type = message.event_type or row.event_type
        if message.envelope is not None or row.envelope is None:
            row.envelope = message.envelope if message.envelope is not None else _jsonable(message.body)
        row.reason = message.reason
        row.attempts = message.attempts
        for name, value in _message_fields(message).items():
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
    """Call the consumer's `on_dead_letter` hook, found by the event's task name."""
    task = _consumer_task(message.event_type)
    hook = getattr(task, "dead_letter_hook", None)
    if hook is None or message.envelope is None:
        return False
    try:
        envelope, payload = parse_message(message.envelope)
    except PermanentError:
        return False
    row.consumer = row.consumer or getattr(task, "consumer_name", "")
    try:
        with transaction.atomic():
            hook(payload, envelope, WorkerDied(worker_died_error(message)))
    except Exception:
        logger.exception("the dead-letter hook of %s failed for event_id=%s", row.consumer, message.event_id)
        return False
    return True
