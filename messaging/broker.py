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
from dataclasses import dataclass, field
from typing import Any

from amqp.exceptions import ChannelError as AMQPChannelError
from kombu import Connection, Producer

from fitness import topology
from fitness.celery import app as celery_app
from messaging.errors import BrokerUnavailable, MessageRefused

logger = logging.getLogger(__name__)

CONFIRM_TIMEOUT_SECONDS = 5.0  # for a whole batch's confirms, and for each socket write


@dataclass
class BatchResult:
    """What RabbitMQ did with each message of a batch, by its index in the batch."""

    confirmed: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)  # index -> why (MessageRefused's text)
    error: str = ""  # set: RabbitMQ could not be used; the rest are neither confirmed nor refused


class _Publisher(threading.local):
    connection: Connection | None = None
    producer: Producer | None = None

    def _connect(self) -> Producer:
        if self.producer is None:
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
            self.producer = Producer(channel)
            self.next_tag = 1  # RabbitMQ numbers a confirm channel's publishes 1, 2, 3...
        return self.producer

    def discard(self, *, failed: bool = True) -> None:
        """Drop the connection. A failed one is cut without the closing handshake: a blocked
        broker does not read it, and waiting for its close-ok would hang."""
        connection, self.connection, self.producer = self.connection, None, None
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
            reused = self.producer is not None
            try:
                producer = self._connect()
            except Exception as exc:
                self.discard()
                return BatchResult(error=_describe(exc))
            result = BatchResult()
            try:
                self._send_and_wait(producer, messages, result)
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

    def _send_and_wait(self, producer: Producer, messages, result: BatchResult) -> None:
        channel = producer.channel
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
            for index, (queue, body, headers) in enumerate(messages):
                event_ids[index] = str(body["event_id"])
                in_flight[self.next_tag] = index
                self.next_tag += 1
                self._send(producer, queue, body, headers)
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

    def _send(self, producer: Producer, queue: str, body: dict[str, Any],
              extra_headers: dict[str, Any] | None) -> None:
        # Celery's message protocol 2, built by Celery itself; published by kombu
        # directly because `send_task`'s routing machinery costs more CPU than the
        # confirmed publish, and our route is already decided (the queue's name).
        headers, properties, message_body, _ = celery_app.amqp.as_task_v2(
            str(body["event_id"]),
            body["event_type"],
            kwargs={"event": body},
            ignore_result=True,
            # What Flower shows; given so Celery's slow saferepr is skipped.
            argsrepr="()",
            kwargsrepr=json.dumps({"event": body}, separators=(",", ":"))[:2000],
        )
        headers.update(
            event_type=body["event_type"],
            event_id=str(body["event_id"]),
            schema_version=body["schema_version"],
            correlation_id=body.get("correlation_id") or "",
        )
        headers.update(extra_headers or {})
        producer.publish(
            message_body,
            exchange=topology.EVENTS_EXCHANGE.name,
            routing_key=queue,
            headers=headers,
            serializer="json",
            delivery_mode="persistent",
            mandatory=True,  # unroutable -> basic.return, not a silent drop
            retry=False,
            timeout=CONFIRM_TIMEOUT_SECONDS,  # a blocked broker stops reading: the write must not hang
            **properties,
        )


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
