"""A dead letter read from RabbitMQ's headers and its body, or from its history row.

See `messaging.dead_letters` for where dead letters live and why.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from fitness import topology
from messaging.events import Envelope
from messaging.models import DeadLetter

# The header a replay adds: how many times this event has been replayed. It also tells
# one death of an event from the next in the archive (see `archive._death_key`).
REPLAY_HEADER = "x-fitness-replays"


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


# --- a dead letter as its row keeps it --------------------------------------------------------
def row_defaults(message: DeadLetterMessage) -> dict:
    return {
        "event_type": message.event_type,
        "envelope": message.envelope if message.envelope is not None else jsonable(message.body),
        "reason": message.reason,
        "attempts": message.attempts,
        "first_dead_at": message.dead_at,
        "last_dead_at": message.dead_at,
        **message_fields(message),
    }


def message_fields(message: DeadLetterMessage) -> dict:
    """The message itself, as the history keeps it (what `dlq show` displays)."""
    raw = message.raw_body if message.raw_body is not None else json.dumps(message.body).encode()
    return {
        "body": raw,
        "content_type": message.content_type[:100],
        "content_encoding": message.content_encoding[:50],
        "headers": jsonable_headers(message.headers),
    }


def jsonable(value: Any) -> Any:
    """`value` as a JSON column can hold it (PostgreSQL's jsonb refuses the character NUL)."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        return repr(value).replace("\x00", "\ufffd")
    return json.loads(text.replace("\\u0000", "\\ufffd")) if "\\u0000" in text else value

