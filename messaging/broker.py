"""Confirmed, mandatory publishing of event envelopes to RabbitMQ.

Only the outbox (fast path and relay) calls this; application code publishes with
`messaging.outbox.publish_event`, which is transaction-safe.

Every publish waits for RabbitMQ's confirm and is `mandatory`: a message that no queue
is bound for comes back as an error instead of being dropped, so its outbox row stays
unpublished. Failures come in two kinds (messaging.errors): BrokerUnavailable, RabbitMQ
cannot be used at all (stop, try again later), and MessageRefused, RabbitMQ refused this
one message (back it off, carry on with the others). `_refusal` is where they are told apart.

Each thread keeps one connection. We manage it here rather than through Celery's
producer pool because after any failure (a timed-out confirm, a returned message) the
channel may still owe us an answer for the failed publish; reusing it could pair the next
publish with that stale confirm. So a connection that failed is thrown away.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from amqp.exceptions import ChannelError as AMQPChannelError
from amqp.exceptions import MessageNacked
from kombu import Connection, Producer

from fitness import topology
from fitness.celery import app as celery_app
from messaging.errors import BrokerUnavailable, MessageRefused

logger = logging.getLogger(__name__)

CONFIRM_TIMEOUT_SECONDS = 5.0


class _Publisher(threading.local):
    connection: Connection | None = None
    producer: Producer | None = None

    def _connect(self) -> Producer:
        if self.producer is None:
            connection = celery_app.connection_for_write()
            connect_once(connection)
            self.connection = connection
            self.producer = Producer(connection.default_channel)
        return self.producer

    def discard(self) -> None:
        connection, self.connection, self.producer = self.connection, None, None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # it is already broken; closing is best effort
                logger.debug("closing a failed broker connection raised", exc_info=True)

    def publish(self, queue: str, body: dict[str, Any], headers: dict[str, Any] | None = None) -> None:
        for attempt in (1, 2):
            reused = self.producer is not None
            try:
                producer = self._connect()
            except Exception as exc:
                self.discard()
                raise BrokerUnavailable(_describe(exc)) from exc
            try:
                self._send(producer, queue, body, headers)
                return
            except Exception as exc:
                # A returned or nacked message leaves the channel owing us a confirm: never reuse it.
                self.discard()
                refusal = _refusal(exc, queue)
                if refusal:
                    raise MessageRefused(refusal) from exc
                if reused and attempt == 1:
                    # A kept connection may have died since its last use (broker restart):
                    # one fresh connection is worth a try before giving up.
                    continue
                raise BrokerUnavailable(_describe(exc)) from exc

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
            mandatory=True,  # unroutable -> error, not a silent drop
            retry=False,
            confirm_timeout=CONFIRM_TIMEOUT_SECONDS,
            **properties,
        )


def connect_once(connection: Connection) -> None:
    """Connect, trying each failover host once, without kombu's sleeps between rounds.

    A request that publishes must not hang while RabbitMQ is down: the outbox row is
    committed already, and the relay publishes it when RabbitMQ is back.
    """
    hosts = max(1, len(connection.alt))
    connection.ensure_connection(max_retries=hosts - 1, interval_start=0, interval_step=0)


def _describe(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {str(exc) or exc.__class__.__name__}"


NO_ROUTE = 312


def _refusal(exc: BaseException, queue: str) -> str:
    """Why RabbitMQ refused this one message, or "" when the failure is the broker's as a whole.

    Refusals arrive on a working connection: a basic.return of an unroutable `mandatory`
    message (py-amqp raises it as a ChannelError with code 312 while it waits for the
    confirm), a basic.nack, or a channel error that this publish caused. A connection error,
    a socket error or a confirm that timed out means the broker itself is the problem.
    """
    if isinstance(exc, MessageNacked):
        return (f"RabbitMQ nacked the message for {queue!r} (a queue refused it, e.g. one at its "
                f"max-length with overflow reject-publish)")
    if isinstance(exc, AMQPChannelError):
        text = str(exc) or exc.__class__.__name__
        if getattr(exc, "code", None) == NO_ROUTE or "NO_ROUTE" in text:
            return (f"no queue is bound for routing key {queue!r} (removed from the topology, or "
                    f"`manage.py setup_broker` has not run): {text}")
        return f"RabbitMQ refused the message for {queue!r}: {exc.__class__.__name__}: {text}"
    return ""


_publisher = _Publisher()


def publish_envelope(queue: str, body: dict[str, Any], *, headers: dict[str, Any] | None = None) -> None:
    """Publish one envelope to `queue` and wait for RabbitMQ's confirm.

    `headers` are added to the message's (a replay marks its number there).
    Raises MessageRefused when RabbitMQ refuses this message (unroutable, nacked, a channel
    error), and BrokerUnavailable, its base, when RabbitMQ cannot be used at all.
    """
    _publisher.publish(queue, body, headers)


def close_connection() -> None:
    _publisher.discard()
