"""Confirmed, mandatory publishing of event envelopes to RabbitMQ, many confirms in flight.

Only the outbox relay (`messaging.outbox.publish_pending`) and dead-letter replays call
this; application code publishes with `messaging.outbox.publish_event`, which only writes
the outbox row.

Every message is `mandatory`, and confirmed: a message that no queue is bound for comes
back as a refusal instead of being dropped, so its outbox row stays unpublished.
`publish_batch` sends a whole batch on a channel in confirm mode and then waits once for
the acks (pipelined confirms: one round trip per batch, not per message), within
CONFIRM_TIMEOUT_SECONDS; a blocked broker (memory or disk alarm) never makes it wait longer.

Failures come in two kinds (messaging.errors): BrokerUnavailable, RabbitMQ cannot be used
at all (stop, try again later), and MessageRefused, RabbitMQ refused this one message (back
it off, carry on with the others). `_refusal` is where they are told apart. A basic.return
(unroutable) or basic.nack refuses one message; a channel error closes the channel under the
whole batch, so its unconfirmed messages are published again one at a time, and the one
that causes the error again is the refused one.

Each message is Celery's protocol 2, its headers (about 25) and properties built once per
connection as a template (`_MessageTemplate`) and per message only the few that differ are
encoded, and the batch's frames are written to the socket together (`_buffered_writes`):
py-amqp's general encoder and one `sendall` per message were 80% of the relay's time.

Each thread keeps one connection. We manage it here rather than through Celery's producer
pool because after any failure (a timed-out confirm, a closed channel) the channel may
still owe us answers for the failed batch; reusing it could pair the next publish with a
stale confirm. So a connection that failed is thrown away.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import amqp
from amqp import spec
from amqp.exceptions import ChannelError as AMQPChannelError
from amqp.serialization import dumps as amqp_dumps
from kombu import Connection

from fitness import topology
from fitness.celery import app as celery_app
from messaging.errors import BrokerUnavailable, MessageRefused

logger = logging.getLogger(__name__)

CONFIRM_TIMEOUT_SECONDS = 5.0  # for a whole batch's confirms, and for each socket write
# The frames of a batch are written in chunks of about this size: one `sendall` per chunk
# instead of one per message, and RabbitMQ starts on the first chunk while we build the next.
WRITE_CHUNK_BYTES = 256 * 1024


@dataclass
class BatchResult:
    """What RabbitMQ did with each message of a batch, by its index in the batch."""

    confirmed: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)  # index -> why (MessageRefused's text)
    error: str = ""  # set: RabbitMQ could not be used; the rest are neither confirmed nor refused


class _Publisher(threading.local):
    connection: Connection | None = None
    channel: Any = None  # the connection's py-amqp channel, in confirm mode

    def _connect(self) -> Any:
        if self.channel is None:
            # confirm mode is set on our channel below; kombu's confirm_publish would wait for
            # each message's confirm in basic_publish, which is what pipelining avoids
            connection = celery_app.connection_for_write(transport_options={"confirm_publish": False})
            try:
                connect_once(connection)
                channel = connection.default_channel
                channel.confirm_select()
            except BaseException:
                connection.release()
                raise
            self.connection = connection
            self.channel = channel
            self.template = _MessageTemplate()
            self.next_tag = 1  # RabbitMQ numbers a confirm channel's publishes 1, 2, 3...
        return self.channel

    def discard(self, *, failed: bool = True) -> None:
        """Drop the connection. A failed one is cut without the closing handshake: a blocked
        broker does not read it, and waiting for its close-ok would hang."""
        connection, self.connection, self.channel = self.connection, None, None
        if connection is not None:
            try:
                if failed:
                    connection.collect()
                else:
                    connection.release()
            except Exception:  # it is already broken; closing is best effort
                logger.debug("closing a failed broker connection raised", exc_info=True)

    def publish_batch(self, messages: Sequence[tuple[str, dict[str, Any], dict[str, Any] | None]]) -> BatchResult:
        for attempt in (1, 2):
            reused = self.channel is not None
            try:
                channel = self._connect()
            except Exception as exc:
                self.discard()
                return BatchResult(error=_describe(exc))
            result = BatchResult()
            try:
                self._send_and_wait(channel, messages, result)
                return result
            except AMQPChannelError as exc:
                # The channel is closed under the batch: no more answers will come on it.
                self.discard()
                unconfirmed = [i for i in range(len(messages)) if i not in result.refused
                               and i not in result.confirmed]
                if len(messages) == 1:
                    result.refused[0] = _refusal(exc, messages[0][0])
                    return result
                for i in unconfirmed:  # find the one that causes it: each again, alone
                    alone = self.publish_batch([messages[i]])
                    if alone.error:
                        result.error = alone.error
                        return result
                    if alone.refused:
                        result.refused[i] = alone.refused[0]
                    else:
                        result.confirmed.append(i)
                return result
            except Exception as exc:
                # A timed-out confirm or a broken socket: the channel may still owe us answers.
                self.discard()
                timed_out = isinstance(exc, TimeoutError)  # alive but blocked or slow: retrying cannot help
                if reused and attempt == 1 and not timed_out and not result.confirmed and not result.refused:
                    # A kept connection may have died since its last use (broker restart,
                    # heartbeats missed while idle): one fresh connection is worth a try.
                    continue
                result.error = _describe(exc)
                return result
        raise AssertionError("unreachable")

    def _send_and_wait(self, channel, messages, result: BatchResult) -> None:
        in_flight: dict[int, int] = {}  # delivery tag -> index in the batch
        returned: dict[str, str] = {}  # event_id -> why RabbitMQ returned it
        event_ids: dict[int, str] = {}

        def on_return(exc, exchange, routing_key, message):
            # RabbitMQ sends a mandatory message's basic.return before its basic.ack
            returned[str((message.headers or {}).get("event_id"))] = _refusal(exc, routing_key)

        def settle(tag: int, multiple: bool, nacked: bool) -> None:
            for t in [t for t in in_flight if t <= tag] if multiple else [tag]:
                index = in_flight.pop(t, None)
                if index is None:
                    continue
                if nacked:
                    result.refused[index] = _nacked(messages[index][0])
                elif event_ids[index] in returned:
                    result.refused[index] = returned[event_ids[index]]
                else:
                    result.confirmed.append(index)

        def on_ack(tag, multiple):
            settle(tag, multiple, nacked=False)

        def on_nack(tag, multiple):
            settle(tag, multiple, nacked=True)

        handlers = (("basic_return", on_return), ("basic_ack", on_ack), ("basic_nack", on_nack))
        for name, handler in handlers:
            channel.events[name].add(handler)
        try:
            with _buffered_writes(self.connection.connection.transport):
                for index, (queue, body, headers) in enumerate(messages):
                    event_ids[index] = str(body["event_id"])
                    in_flight[self.next_tag] = index
                    self.next_tag += 1
                    # send_method rather than basic_publish: the latter also polls the socket
                    # for a connection.blocked before each message (a syscall each), and a
                    # blocked broker shows here as confirms that do not come in time
                    channel.send_method(
                        spec.Basic.Publish, "Bssbb",
                        (0, topology.EVENTS_EXCHANGE.name, queue, True, False),  # mandatory
                        self.template.message(body, headers),
                    )
            deadline = time.monotonic() + CONFIRM_TIMEOUT_SECONDS
            while in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"RabbitMQ confirmed {len(messages) - len(in_flight)} of {len(messages)} message(s)"
                        f" within {CONFIRM_TIMEOUT_SECONDS:g} s (blocked by an alarm, or overloaded)"
                    )
                try:
                    self.connection.drain_events(timeout=remaining)
                except TimeoutError:
                    continue  # the deadline's error says how far it got
        finally:
            for name, handler in handlers:
                channel.events[name].discard(handler)


class _Prepared(amqp.Message):
    """A message whose content header (properties and headers) is already encoded."""

    def __init__(self, body: bytes, properties: bytes):
        super().__init__(body)
        self._properties = properties

    def _serialize_properties(self) -> bytes:  # what py-amqp's frame writer calls
        return self._properties


def _short(value: str) -> bytes:
    data = value.encode()
    if len(data) > 255:
        raise ValueError(f"{value[:40]!r}... is longer than an AMQP short string (255 bytes)")
    return bytes((len(data),)) + data


def _field(name: str, value: str) -> bytes:
    """One field of an AMQP table, a long string: what py-amqp writes for a str value."""
    data = value.encode()
    return _short(name) + b"S" + len(data).to_bytes(4, "big") + data


# The properties Celery's messages carry (kombu's publish: the json serializer, persistent,
# priority 0, the task id as correlation_id, no reply_to), in py-amqp's order: flags, then
# content_type, content_encoding, application_headers, delivery_mode, priority,
# correlation_id, reply_to. tests/messaging/test_relay.py checks the bytes against py-amqp's.
_FLAGS = sum(1 << (15 - i) for i in range(7)).to_bytes(2, "big")
_BEFORE_HEADERS = _FLAGS + _short("application/json") + _short("utf-8")
_AFTER_HEADERS = bytes((2, 0))  # delivery_mode 2 (persistent), priority 0
_NO_REPLY_TO = _short("")
_CALLBACKS = b', {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]'


class _MessageTemplate:
    """Celery's protocol 2 for an event, its constant headers encoded once.

    Built by Celery itself (`as_task_v2`) for a placeholder; per message only the headers
    that differ (the ids, the task's name, kwargsrepr, our event headers) are encoded, and
    the body (`[[], {"event": envelope}, {callbacks...}]`) is one json.dumps of the envelope.
    Headers a replay adds (`extra`) go through py-amqp's own encoder.
    """

    VARYING = ("task", "id", "root_id", "kwargsrepr")

    def __init__(self) -> None:
        headers, properties, body, _ = celery_app.amqp.as_task_v2(
            "-", "-", kwargs={"event": {}}, ignore_result=True, argsrepr="()", kwargsrepr="",
        )
        # what this class encodes by hand; a Celery that sends anything else must be looked at
        expected_body = ((), {"event": {}}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None})
        if properties != {"correlation_id": "-", "reply_to": ""} or body != expected_body:
            raise RuntimeError(f"Celery's protocol 2 changed (properties {properties}, body {body}):"
                               f" messaging.broker._MessageTemplate must be brought up to date")
        constant = {k: v for k, v in headers.items() if k not in self.VARYING}
        self.constant = amqp_dumps("F", [constant])[4:]  # the table's fields, without its length

    def message(self, body: dict[str, Any], extra: dict[str, Any] | None = None) -> _Prepared:
        envelope = json.dumps(body, separators=(",", ":"))
        event_id, event_type = str(body["event_id"]), body["event_type"]
        fields = b"".join((
            self.constant,
            _field("task", event_type), _field("id", event_id), _field("root_id", event_id),
            # what Flower shows; Celery's saferepr of it would cost more than the publish
            _field("kwargsrepr", ('{"event":' + envelope + "}")[:2000]),
            _field("event_type", event_type), _field("event_id", event_id),
            _short("schema_version") + b"I" + int(body["schema_version"]).to_bytes(4, "big", signed=True),
            _field("correlation_id", body.get("correlation_id") or ""),
            amqp_dumps("F", [extra])[4:] if extra else b"",
        ))
        properties = b"".join((
            _BEFORE_HEADERS, len(fields).to_bytes(4, "big"), fields, _AFTER_HEADERS,
            _short(event_id), _NO_REPLY_TO,
        ))
        return _Prepared(b'[[], {"event": ' + envelope.encode() + b"}" + _CALLBACKS, properties)


@contextmanager
def _buffered_writes(transport):
    """Collect what py-amqp writes to `transport` and send it in chunks, not a write per frame.

    py-amqp's frame writer calls `transport.write(view)` once per message (a view of a
    buffer it reuses, hence the copy) and `write` calls `transport._write`, the socket's
    sendall: that is the one place to intercept, there is no public API for it. On the way
    out what is left is sent, each sendall within CONFIRM_TIMEOUT_SECONDS (a blocked broker
    stops reading), and `_write` is put back whatever happened.
    """
    send = transport._write
    pending = bytearray()

    def flush() -> None:
        if pending:
            with transport.having_timeout(CONFIRM_TIMEOUT_SECONDS):
                send(pending)
            pending.clear()

    def collect(data) -> None:
        pending.extend(data)
        if len(pending) >= WRITE_CHUNK_BYTES:
            flush()

    transport._write = collect
    try:
        yield
        flush()
    finally:
        transport._write = send


def connect_once(connection: Connection) -> None:
    """Connect, trying each failover host once, without kombu's sleeps between rounds.

    The relay must not hang while RabbitMQ is down: the outbox row is committed already,
    and the relay tries again after a backoff.
    """
    hosts = max(1, len(connection.alt))
    connection.ensure_connection(max_retries=hosts - 1, interval_start=0, interval_step=0)


def _describe(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {str(exc) or exc.__class__.__name__}"


NO_ROUTE = 312


def _nacked(queue: str) -> str:
    return (f"RabbitMQ nacked the message for {queue!r} (a queue refused it, e.g. one at its "
            f"max-length with overflow reject-publish)")


def _refusal(exc: BaseException, queue: str) -> str:
    """Why RabbitMQ refused this one message: a basic.return or a channel error it caused.

    Refusals arrive on a working connection: a basic.return of an unroutable `mandatory`
    message (code 312), a basic.nack (`_nacked`), or a channel error that this publish
    caused. A connection error, a socket error or a confirm that timed out means the broker
    itself is the problem, and is no refusal.
    """
    text = str(exc) or exc.__class__.__name__
    if getattr(exc, "code", None) == NO_ROUTE or "NO_ROUTE" in text:
        return (f"no queue is bound for routing key {queue!r} (removed from the topology, or "
                f"`manage.py setup_broker` has not run): {text}")
    return f"RabbitMQ refused the message for {queue!r}: {exc.__class__.__name__}: {text}"


_publisher = _Publisher()


def publish_batch(messages: Sequence[tuple[str, dict[str, Any], dict[str, Any] | None]]) -> BatchResult:
    """Publish `(queue, envelope, extra headers)` messages with pipelined confirms, in order.

    Returns which were confirmed and which RabbitMQ refused (each with why); when RabbitMQ
    could not be used `error` says why, and the rest were neither.
    """
    if not messages:
        return BatchResult()
    return _publisher.publish_batch(messages)


def publish_envelope(queue: str, body: dict[str, Any], *, headers: dict[str, Any] | None = None) -> None:
    """Publish one envelope to `queue` and wait for RabbitMQ's confirm.

    `headers` are added to the message's (a replay marks its number there).
    Raises MessageRefused when RabbitMQ refuses this message (unroutable, nacked, a channel
    error), and BrokerUnavailable, its base, when RabbitMQ cannot be used at all.
    """
    result = publish_batch([(queue, body, headers)])
    if result.refused:
        raise MessageRefused(result.refused[0])
    if result.error:
        raise BrokerUnavailable(result.error)


def close_connection() -> None:
    _publisher.discard(failed=False)
