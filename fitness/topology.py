"""The queue topology: the one place where exchanges, queues and routes are declared.

Everything else (the Celery app, `publish_event`, `setup_broker`, the tests, the
Procfile's `-Q` lists) reads them from here.

    producer ──publish, routing key = event type──▶ fitness.events (topic)
                     ┌────────── binding: TaskSubmittedEvent ──────────┤
                     ▼                                                 ▼
              task.submitted (AI)                               audit (every event type)
              also bound with its own name: retries, delayed delivery and replays use
              that key, so they reach this one queue          │ reject /
                                                               │ delivery limit
    fitness.dead-letter (direct) ◀──────────── dead-letter routing key = queue name
              ├──────────▶ <queue>.dlq             (held for `manage.py dlq` to inspect, replay, purge)
              └──────────▶ dead-letters.archive    (every work queue's key; the archiver records
                                                    each dead letter in PostgreSQL)

Publish–subscribe: an event is published once, with its type for routing key, and RabbitMQ
puts a copy in the queue of every subscriber bound with that key (`Subscriber.events`).
Adding a subscriber is a `Subscriber` here, its handler (`event_consumer(..., queue=...)`)
and `manage.py setup_broker`: the producer publishes the same bytes and is not redeployed.
A queue bound by hand to `fitness.events` with an event type's key gets every event of that type.
Each subscriber queue is also bound with its own name, the key of its retries, its delayed
deliveries and the replays from its `.dlq`: those concern one subscriber's copy only.

Every work queue is a durable quorum queue (replicated, persistent) with an explicit
delivery limit, so a message that keeps crashing its worker is dead-lettered instead of
looping forever, and with at-least-once dead-lettering, so a dead letter is never dropped
on its way to the `.dlq`. Quorum queues in RabbitMQ 3.10 have no message priorities:
urgency comes from dedicated queues and worker pools (`equipment.fault` has its own).

Each work queue names its retry policy (`WorkQueue.retries`, read by the consumer base in
`messaging.consumers`): how often and after how long a failed event is tried again before it
is dead-lettered. Work that a person replays from the `.dlq` keeps DD-02's 1 s, 2 s, 4 s
(`SEED_RETRIES`): it fails fast and visibly. A fault alert is worth more retries than that:
it is only useful if it reaches the owner while the fault matters, and the usual cause of its
failure is an FCM outage that ends on its own. So `equipment.fault` retries after 1, 2, 4, 8 s
and then every 10 s, for 15 minutes in all (`ALERT_RETRIES`; FAULT_ALERT_RETRY_SECONDS
changes the 15 minutes): an alert survives an outage of that long without an operator and
goes out at most ~10 s after FCM is back. Only then is it dead-lettered (and replayable).

Retries with a countdown use Celery's native delayed delivery (the `celery_delayed_*`
queues, countdowns up to 2^28 - 1 s), which routes a delayed message back through a *topic* exchange; that is why the
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

import os
from dataclasses import dataclass

from amqp.exceptions import PreconditionFailed
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

# The `.dlq`s and the archive queue hold messages for people and the archiver, who return
# some of them (a replay or purge takes a `.dlq`'s messages one by one and returns those it
# does not select; the archiver returns one it could not record while PostgreSQL is down).
# Those returns must never make RabbitMQ drop a dead letter, so these queues have no
# delivery limit. How to say "none" depends on the version: RabbitMQ 3.x has no default
# limit and takes `x-delivery-limit: -1` literally (a message returned once is dropped:
# measured on 3.10.8), so there the argument is left out; RabbitMQ 4.x defaults to 20 and
# documents `x-delivery-limit: -1` (a queue argument; a policy cannot set -1 reliably) as
# "no limit". See `holding_queue_arguments`.
UNLIMITED_DELIVERIES = -1
FIRST_VERSION_WITH_A_DEFAULT_DELIVERY_LIMIT = 4


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed event is retried before it is dead-lettered: `max_retries` times, the
    first after `first_delay` seconds, each delay twice the one before, at most `max_delay`.
    Failures count, not time: an attempt's own duration adds to the time between tries."""

    max_retries: int
    first_delay: int = 1
    max_delay: int = 60

    def __post_init__(self) -> None:
        if self.max_retries < 0 or not 1 <= self.first_delay <= self.max_delay < 2**28:
            raise ValueError(f"not a retry policy: {self}")  # native delayed delivery: < 2^28 s

    def delay(self, retries: int) -> int:
        """The countdown before the retry that follows `retries` earlier retries."""
        return min(self.first_delay * 2 ** min(retries, 28), self.max_delay)

    @property
    def delays(self) -> list[int]:
        return [self.delay(retries) for retries in range(self.max_retries)]

    @property
    def total_delay(self) -> int:
        """Seconds of countdown between the first attempt and the last one."""
        return sum(self.delays)

    @classmethod
    def lasting(cls, seconds: int, *, first_delay: int = 1, max_delay: int = 60) -> RetryPolicy:
        """As many retries as it takes for their countdowns to add up to `seconds`."""
        delays = 0
        retries = 0
        while delays < seconds:
            delays += min(first_delay * 2 ** min(retries, 28), max_delay)
            retries += 1
        return cls(max_retries=retries, first_delay=first_delay, max_delay=max_delay)

    def describe(self) -> str:
        delays = self.delays
        shown = ", ".join(f"{d} s" for d in delays[:6]) + (f", … ({len(delays)} retries)" if len(delays) > 6 else "")
        return f"retries after {shown or 'none'}: {self.total_delay} s in all"


def _seconds_from_env(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    try:
        seconds = int(value) if value else default
    except ValueError:
        raise ValueError(f"{name} must be a whole number of seconds, not {value!r}") from None
    if seconds < 0:
        raise ValueError(f"{name} must be 0 or more seconds, not {seconds}")
    return seconds


# DD-02's retry policy (1 s, 2 s, 4 s, then the `.dlq`; docs/decisions.md): for work a person replays.
SEED_RETRIES = RetryPolicy(max_retries=3, first_delay=1, max_delay=60)
# Fault alerts: 1, 2, 4, 8 s, then every 10 s, for 15 minutes (see the module docstring).
ALERT_RETRIES = RetryPolicy.lasting(_seconds_from_env("FAULT_ALERT_RETRY_SECONDS", 15 * 60),
                                    first_delay=1, max_delay=10)


# Every event type that is published. Each is the routing key of its events on
# `fitness.events` (the producer knows nothing else of the topology); a test checks this
# list against the contracts of `messaging.contracts`.
EVENT_TYPES: tuple[str, ...] = (
    "TaskSubmittedEvent",
    "TaskAnalyzedEvent",
    "TaskConfirmedEvent",
    "EquipmentFaultEvent",
    "BranchPreferenceCreatedEvent",
)


@dataclass(frozen=True)
class Subscriber:
    """A subscriber's queue: bound to `fitness.events` with each event type it handles.

    It is also bound with its own name: that is the routing key of its retries, of the
    native delayed delivery and of replays from its `.dlq`, so they reach this queue alone.
    A queue of plain jobs (`mlops`) is a Subscriber without event types.
    """

    name: str
    purpose: str
    process: str  # the Procfile process (worker pool) that consumes it
    events: tuple[str, ...] = ()  # the event types it subscribes to
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT
    retries: RetryPolicy = SEED_RETRIES  # how its consumer retries a failed event

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

    def as_kombu_queue(self, *, no_declare: bool = False) -> Queue:
        """The queue as Celery knows it: bound with its own name, the key Celery routes its
        retries by and native delayed delivery copies. The event types' bindings are
        declared by `declare_topology` (`event_bindings`): kombu drops a queue's exchange
        once it has several bindings, and Celery needs the exchange to route a retry; and
        binding the event types to the delayed-delivery exchange too would let a delayed
        retry of one subscriber's copy reach every subscriber of the event type."""
        return Queue(
            self.name,
            exchange=EVENTS_EXCHANGE,
            routing_key=self.name,
            durable=True,
            queue_arguments=self.arguments,
            no_declare=no_declare,
        )

    def event_bindings(self) -> list[binding]:
        return [binding(EVENTS_EXCHANGE, routing_key=event_type) for event_type in self.events]

    def dead_letter_queue(self, broker_major_version: int = 3) -> Queue:
        return Queue(
            self.dead_letter_queue_name,
            exchange=DEAD_LETTER_EXCHANGE,
            routing_key=self.name,
            durable=True,
            queue_arguments=holding_queue_arguments(broker_major_version),
        )


WorkQueue = Subscriber  # the name of before publish-subscribe


def holding_queue_arguments(broker_major_version: int) -> dict:
    """The arguments of a queue that must never drop a message however often it is returned."""
    if broker_major_version >= FIRST_VERSION_WITH_A_DEFAULT_DELIVERY_LIMIT:
        return {"x-queue-type": "quorum", "x-delivery-limit": UNLIMITED_DELIVERIES}
    return {"x-queue-type": "quorum"}  # 3.x: no delivery limit unless one is given


def broker_major_version(connection: Connection) -> int:
    """The major version of the RabbitMQ node `connection` is connected to (3 if it does not say)."""
    version = (getattr(connection.connection, "server_properties", None) or {}).get("version") or b"3"
    text = version.decode() if isinstance(version, bytes | bytearray) else str(version)
    try:
        return int(text.split(".")[0])
    except ValueError:
        return 3


AUDIT_QUEUE = "audit"

WORK_QUEUES: tuple[Subscriber, ...] = (
    Subscriber("task.submitted", "AI reading of a helper's laundry photo", "worker-ai",
               events=("TaskSubmittedEvent",)),
    Subscriber("task.confirmed", "owner-confirmed readings become training data", "worker-mlops",
               events=("TaskConfirmedEvent",)),
    Subscriber("mlops", "retraining, evaluation and promotion jobs; the retention prune", "worker-mlops"),
    Subscriber("equipment.fault", "equipment fault alerts to the branch owner", "worker-alerts",
               events=("EquipmentFaultEvent",), retries=ALERT_RETRIES),
    Subscriber("preference.created", "branch recommendations to matching customers", "worker-notify",
               events=("BranchPreferenceCreatedEvent",)),
    Subscriber("task.analyzed.push", "a push to the helper when the AI has read the photo", "worker-notify",
               events=("TaskAnalyzedEvent",)),
    Subscriber(AUDIT_QUEUE, "the audit trail: every event, in the event log", "worker-audit",
               events=EVENT_TYPES),
)

_CELERY_QUEUES: list[Queue] = [queue.as_kombu_queue(no_declare=True) for queue in WORK_QUEUES]

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


def retry_policy(queue: str | None) -> RetryPolicy:
    """The retry policy of work queue `queue`; DD-02's for a queue not in the topology."""
    for candidate in WORK_QUEUES:
        if candidate.name == queue:
            return candidate.retries
    return SEED_RETRIES


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


def dead_letter_archive_queue(broker_major_version: int = 3) -> Queue:
    """The archive queue: bound to the dead-letter exchange with every work queue's key."""
    return Queue(
        DEAD_LETTER_ARCHIVE_QUEUE,
        bindings=[binding(DEAD_LETTER_EXCHANGE, routing_key=queue.name) for queue in WORK_QUEUES],
        durable=True,
        queue_arguments=holding_queue_arguments(broker_major_version),
    )


def add_subscriber(subscriber: Subscriber) -> Subscriber:
    """Declare one more subscriber (tests, a team's own module loaded before the Celery app):
    the same as a line in WORK_QUEUES. Its queue exists once `setup_broker` has run."""
    global WORK_QUEUES
    if any(queue.name == subscriber.name for queue in WORK_QUEUES):
        raise ValueError(f"a queue named {subscriber.name!r} is declared already")
    WORK_QUEUES = (*WORK_QUEUES, subscriber)
    _CELERY_QUEUES.append(subscriber.as_kombu_queue(no_declare=True))
    return subscriber


# Routing keys other than the event type: none in production. The tests route their probe
# events straight to one queue by its name (every subscriber queue is bound with its name).
ROUTING_KEY_OVERRIDES: dict[str, str] = {}


def routing_key_for_event(event_type: str) -> str:
    """The routing key of an event on `fitness.events`: its type. Every subscriber's queue
    bound with it gets a copy; the producer needs to know none of them."""
    return ROUTING_KEY_OVERRIDES.get(event_type, event_type)


def subscribers_of(event_type: str) -> list[Subscriber]:
    """The declared subscribers of `event_type` (a queue bound by hand is not among them)."""
    return [queue for queue in WORK_QUEUES if event_type in queue.events]


def queues_for_process(process: str) -> list[str]:
    return [queue.name for queue in WORK_QUEUES if queue.process == process]


def celery_queues() -> list[Queue]:
    """The queues Celery knows, never declared by Celery: `setup_broker` declares them.

    Neither a worker (its `-Q` queues) nor a publisher (a job's queue) declares a queue, its
    exchange or its binding, so their RabbitMQ users need no configure right on the topology
    and cannot delete any of it (fitness/broker_users.py). One list, which `add_subscriber`
    extends, given to the Celery app as its `task_queues`.
    """
    return _CELERY_QUEUES


@dataclass
class DeclaredTopology:
    declared: list[str]
    # queues that exist with the arguments of an older set-up and could not be brought up to date
    problems: list[str]


def declare_topology(connection: Connection, *, recreate_outdated: bool = False) -> DeclaredTopology:
    """Declare every exchange, queue and binding; idempotent. Says what it declared.

    Nothing else declares anything (`celery_queues` are `no_declare`), and a rejected
    message whose dead-letter exchange does not exist is dropped silently; so this runs
    before any worker or publisher (`manage.py setup_broker`).
    `recreate_outdated`: see `_declare_holding_queue`.
    """
    result = DeclaredTopology(declared=[], problems=[])
    declared = result.declared
    version = broker_major_version(connection)
    channel = connection.default_channel
    for exchange in (EVENTS_EXCHANGE, DEAD_LETTER_EXCHANGE):
        exchange.bind(channel).declare()
        declared.append(f"exchange {exchange.name} ({exchange.type})")
    # Celery's native delayed delivery: the celery_delayed_* exchanges and quorum queues
    # that hold retried messages until their countdown is over.
    declare_native_delayed_delivery_exchanges_and_queues(connection, "quorum")
    declared.append("exchanges and queues celery_delayed_0..27 (native delayed delivery)")
    unlimited = "no delivery limit"
    for queue in WORK_QUEUES:
        kombu_queue = queue.as_kombu_queue().bind(channel)
        kombu_queue.declare()
        for event_binding in queue.event_bindings():
            kombu_queue.bind_to(event_binding.exchange.name, event_binding.routing_key)
        bind_queue_to_native_delayed_delivery_exchange(connection, kombu_queue)
        keys = ", ".join((*queue.events, queue.name))
        declared.append(f"queue {queue.name} (quorum, delivery limit {queue.delivery_limit}; keys {keys})")
        _declare_holding_queue(connection, queue.dead_letter_queue(version), version, result,
                               f"quorum, {unlimited}, dead letters of {queue.name}", recreate_outdated)
    _declare_holding_queue(connection, dead_letter_archive_queue(version), version, result,
                           f"quorum, {unlimited}, a copy of every dead letter for the archiver", recreate_outdated)
    return result


def _declare_holding_queue(connection: Connection, queue: Queue, version: int, result: DeclaredTopology,
                           description: str, recreate_outdated: bool) -> None:
    """Declare a `.dlq` or the archive queue; report one declared by an older set-up.

    RabbitMQ refuses (PRECONDITION_FAILED) to redeclare a queue with other arguments, e.g. a
    `.dlq` declared without a delivery limit before RabbitMQ 4 made 20 the default. Such a
    queue is kept, bound as the topology says, and reported. With `recreate_outdated` an
    empty one is deleted and declared again. That is for a quiet moment (workers and the
    archiver stopped): quorum queues cannot be deleted "only if empty", so a dead letter
    arriving between the count and the delete would go with the queue.
    """
    channel = connection.channel()
    try:
        queue.bind(channel).declare()
        result.declared.append(f"queue {queue.name} ({description})")
        return
    except PreconditionFailed:
        pass  # the broker closed the channel
    finally:
        _close_quietly(channel)
    channel = connection.channel()
    try:
        _, messages, consumers = channel.queue_declare(queue.name, passive=True)
        if recreate_outdated and messages == 0:
            channel.queue_delete(queue.name)
            queue.bind(channel).declare()
            result.declared.append(f"queue {queue.name} ({description}; recreated: it was empty and had the "
                                   f"arguments of an older set-up)")
            return
        bound = queue.bind(channel)
        for exchange_binding in queue.bindings or [binding(queue.exchange, routing_key=queue.routing_key)]:
            bound.bind_to(exchange_binding.exchange.name, exchange_binding.routing_key)
        if messages:
            advice = (f"it holds {messages} message(s): replay or purge them (manage.py dlq), then run "
                      f"`setup_broker --recreate-outdated` with the workers and the archiver stopped")
        else:
            advice = "it is empty: run `setup_broker --recreate-outdated` with the workers and the archiver stopped"
        result.problems.append(
            f"queue {queue.name} has the arguments of an older set-up, not {queue.queue_arguments} "
            f"(RabbitMQ {version}.x)"
            + ("; without an explicit delivery limit RabbitMQ 4 drops a dead letter returned 20 times"
               if version >= FIRST_VERSION_WITH_A_DEFAULT_DELIVERY_LIMIT else "")
            + f"; {advice}"
        )
    finally:
        _close_quietly(channel)


def _close_quietly(channel) -> None:
    try:
        channel.close()
    except Exception:  # already closed by the broker
        pass
