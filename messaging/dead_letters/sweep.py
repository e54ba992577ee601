"""Taking chosen dead letters out of a `.dlq`, one by one, and returning the others untouched.

See `messaging.dead_letters` (why browsing never takes messages from the queues).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from amqp import spec as amqp_spec

from fitness import topology
from fitness.celery import app as celery_app
from messaging.dead_letters.messages import DeadLetterMessage, parse_raw_dead_letter
from messaging.errors import BrokerUnavailable


@contextmanager
def broker_channel() -> Iterator[Any]:
    connection = celery_app.connection_for_write()
    try:
        try:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0)
        except Exception as exc:
            raise BrokerUnavailable(f"cannot reach RabbitMQ at {connection.as_uri()}: {exc}") from exc
        yield connection.channel()
    finally:
        connection.release()


def message_count(channel: Any, name: str) -> int:
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


def take(work_queue: topology.WorkQueue, wanted: dict[tuple[str, str], int], decide: Decision) -> set:
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
    with broker_channel() as channel:
        waiting = message_count(channel, dlq)
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

