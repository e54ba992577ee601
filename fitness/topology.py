"""The queue topology: the one place where exchanges, queues and routes are declared.

Everything else (the Celery app, `publish_event`, `setup_broker`, the tests, the
Procfile's `-Q` lists) reads them from here.

    producer ──publish──▶ fitness.events (topic) ──routing key = queue name──▶ <queue>
                                                                                 │ reject /
                                                                                 │ delivery limit
    fitness.dead-letter (direct) ◀──────────── dead-letter routing key = queue name
              ├──────────▶ <queue>.dlq             (held for `manage.py dlq` to inspect, replay, purge)
              └──────────▶ dead-letters.archive    (every work queue's key; the archiver records
                                                    each dead letter in PostgreSQL)

Every work queue is a durable quorum queue (replicated, persistent) with an explicit
delivery limit, so a message that keeps crashing its worker is dead-lettered instead of
looping forever, and with at-least-once dead-lettering, so a dead letter is never dropped
on its way to the `.dlq`. Quorum queues in RabbitMQ 3.10 have no message priorities:
urgency comes from dedicated queues and worker pools (`equipment.fault` has its own).

Retries with a countdown use Celery's native delayed delivery (the `celery_delayed_*`
queues), which routes a delayed message back through a *topic* exchange; that is why the
work exchange is a topic exchange and why the dead-letter routing key is set explicitly
(a delayed message's routing key carries a binary delay prefix).

Each dead letter is routed twice by the direct dead-letter exchange: to its queue's `.dlq`,
where it waits for an operator (RabbitMQ keeps the message itself, so a replay republishes
exactly what failed), and to the one archive queue, bound with every work queue's routing
key, whose consumer (`manage.py archive_dead_letters`, the `dead-letters` process) records
it in PostgreSQL. The history therefore survives a purge of the `.dlq`, is searchable in the
admin, and a message dead-lettered by the delivery limit (its worker died, so no failure
handler ran) still reaches its consumer's dead-letter hook. With at-least-once
dead-lettering RabbitMQ keeps the message in the work queue until both copies are stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from kombu import Connection, Exchange, Queue, binding
from kombu.transport.native_delayed_delivery import (
    bind_queue_to_native_delayed_delivery_exchange,
    declare_native_delayed_delivery_exchanges_and_queues,
)

EVENTS_EXCHANGE = Exchange("fitness.events", type="topic", durable=True, delivery_mode="persistent")
DEAD_LETTER_EXCHANGE = Exchange("fitness.dead-letter", type="direct", durable=True)
DEAD_LETTER_SUFFIX = ".dlq"
# Every dead letter of every work queue is also copied here for the dead-letter archiver.
DEAD_LETTER_ARCHIVE_QUEUE = "dead-letters.archive"
DEAD_LETTER_ARCHIVE_PROCESS = "dead-letters"

# How many times RabbitMQ hands out the same message (worker crash, requeue) before it
# dead-letters it. Celery retries publish a fresh copy, so they do not count against it.
DEFAULT_DELIVERY_LIMIT = 5


@dataclass(frozen=True)
class WorkQueue:
    name: str
    purpose: str
    process: str  # the Procfile process that consumes it
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT

    @property
    def dead_letter_queue_name(self) -> str:
        return self.name + DEAD_LETTER_SUFFIX

    @property
    def arguments(self) -> dict:
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE.name,
            "x-dead-letter-routing-key": self.name,
            # at-least-once dead-lettering only takes effect with reject-publish overflow
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }

    def as_kombu_queue(self) -> Queue:
        return Queue(
            self.name,
            exchange=EVENTS_EXCHANGE,
            routing_key=self.name,
            durable=True,
            queue_arguments=self.arguments,
        )

    def dead_letter_queue(self) -> Queue:
        return Queue(
            self.dead_letter_queue_name,
            exchange=DEAD_LETTER_EXCHANGE,
            routing_key=self.name,
            durable=True,
            queue_arguments={"x-queue-type": "quorum"},
        )


WORK_QUEUES: tuple[WorkQueue, ...] = (
    WorkQueue("task.submitted", "AI reading of a helper's laundry photo", "worker-ai"),
    WorkQueue("task.confirmed", "owner-confirmed readings become training data", "worker-mlops"),
    WorkQueue("mlops", "retraining, evaluation and promotion jobs; the retention prune", "worker-mlops"),
    WorkQueue("equipment.fault", "equipment fault alerts to the branch owner", "worker-alerts"),
    WorkQueue("preference.created", "branch recommendations to matching customers", "worker-notify"),
)

# Which queue each event goes to. One event type has one consumer (its queue's worker
# pool); a second consumer of the same event would get its own event route here.
EVENT_ROUTES: dict[str, str] = {
    "TaskSubmittedEvent": "task.submitted",
    "TaskConfirmedEvent": "task.confirmed",
    "EquipmentFaultEvent": "equipment.fault",
    "BranchPreferenceCreatedEvent": "preference.created",
}

# Plain Celery jobs (not events), by task name pattern.
TASK_ROUTES: dict[str, dict] = {
    "ml.*": {"queue": "mlops"},
    # The hourly prune of old rows (messaging/jobs.py): batch work, for the batch-work pool.
    "retention.*": {"queue": "mlops"},
}


class UnknownRoute(LookupError):
    pass


def work_queue(name: str) -> WorkQueue:
    for queue in WORK_QUEUES:
        if queue.name == name:
            return queue
    raise UnknownRoute(f"no work queue named {name!r}; known: {', '.join(queue_names())}")


def queue_names() -> list[str]:
    return [queue.name for queue in WORK_QUEUES]


def dead_letter_queue_names() -> list[str]:
    return [queue.dead_letter_queue_name for queue in WORK_QUEUES]


def work_queue_of_dead_letter_queue(name: str) -> WorkQueue:
    """The work queue whose dead letters `name` (`<queue>.dlq`) holds."""
    for queue in WORK_QUEUES:
        if queue.dead_letter_queue_name == name:
            return queue
    raise UnknownRoute(f"no dead-letter queue named {name!r}; known: {', '.join(dead_letter_queue_names())}")


def dead_letter_archive_queue() -> Queue:
    """The archive queue: bound to the dead-letter exchange with every work queue's key."""
    return Queue(
        DEAD_LETTER_ARCHIVE_QUEUE,
        bindings=[binding(DEAD_LETTER_EXCHANGE, routing_key=queue.name) for queue in WORK_QUEUES],
        durable=True,
        queue_arguments={"x-queue-type": "quorum"},
    )


def queue_for_event(event_type: str) -> str:
    try:
        return EVENT_ROUTES[event_type]
    except KeyError:
        raise UnknownRoute(f"no queue is routed for event type {event_type!r}") from None


def queues_for_process(process: str) -> list[str]:
    return [queue.name for queue in WORK_QUEUES if queue.process == process]


def celery_queues() -> list[Queue]:
    """The queues Celery knows; a worker declares only those it consumes (`-Q`)."""
    return [queue.as_kombu_queue() for queue in WORK_QUEUES]


def declare_topology(connection: Connection) -> list[str]:
    """Declare every exchange, queue and binding; idempotent. Returns what it declared.

    A worker declares only the queues it consumes, never the dead-letter side, and a
    rejected message whose dead-letter exchange does not exist is dropped silently; so
    this runs before any worker or publisher (`manage.py setup_broker`).
    """
    declared: list[str] = []
    channel = connection.default_channel
    for exchange in (EVENTS_EXCHANGE, DEAD_LETTER_EXCHANGE):
        exchange.bind(channel).declare()
        declared.append(f"exchange {exchange.name} ({exchange.type})")
    # Celery's native delayed delivery: the celery_delayed_* exchanges and quorum queues
    # that hold retried messages until their countdown is over.
    declare_native_delayed_delivery_exchanges_and_queues(connection, "quorum")
    declared.append("exchanges and queues celery_delayed_0..27 (native delayed delivery)")
    for queue in WORK_QUEUES:
        kombu_queue = queue.as_kombu_queue().bind(channel)
        kombu_queue.declare()
        bind_queue_to_native_delayed_delivery_exchange(connection, kombu_queue)
        declared.append(f"queue {queue.name} (quorum, delivery limit {queue.delivery_limit})")
        queue.dead_letter_queue().bind(channel).declare()
        declared.append(f"queue {queue.dead_letter_queue_name} (quorum, dead letters of {queue.name})")
    dead_letter_archive_queue().bind(channel).declare()
    declared.append(f"queue {DEAD_LETTER_ARCHIVE_QUEUE} (quorum, a copy of every dead letter for the archiver)")
    return declared
