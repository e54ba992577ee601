"""The base consumer: every event handler is registered through `event_consumer`.

    @event_consumer(TaskSubmittedEvent, name="ml.read_task_photo")
    def read_task_photo(event: TaskSubmittedEvent, envelope: Envelope) -> None:
        ...business logic only...

What the decorator gives every handler, so that no handler repeats it:

* the message is parsed into its envelope and typed payload; a malformed message or an
  unknown event type/version is dead-lettered at once (retrying cannot fix it);
* idempotency: the handler runs in a database transaction that also records
  (consumer, event_id); a redelivered event whose record exists is skipped, and one whose
  earlier attempt failed finds no record and no half-done effects. The record is written
  at the end, in one statement with the activity row (`claim_and_record`): a copy that
  RabbitMQ marks redelivered, or a retry, is looked up first and skipped without running the
  handler; any other copy that finds the record taken at the end (a second publish of the
  same event) rolls its effects back and is skipped. So the usual first delivery costs one
  statement for both records, not two;
* retries: any exception except a PermanentError retries by the retry policy of the queue
  the message came from (`fitness.topology`, `WorkQueue.retries`: 1 s, 2 s and 4 s for most,
  longer for fault alerts; no jitter) and the final failure is rejected, so RabbitMQ
  dead-letters it to `<queue>.dlq` with its body intact; the error is recorded first in the
  dead letter's history (`messaging.dead_letters`), since a rejection cannot carry it;
* logging with event_id, event type and correlation_id (and task_id when the payload has
  one) on every line the handler logs; the correlation id also flows into events the
  handler publishes;
* metrics (`observability.metrics`): events processed or skipped as duplicates, failed
  attempts, dead-lettered events, and the time of each processed event.

Publish–subscribe. The Celery task is named after the event type: that name (and the
routing key, also the event type) is the only thing producer and consumer share, so either
side can be deployed without the other. An event type may have any number of subscribers,
each with its own queue (`fitness.topology.Subscriber`, `event_consumer(..., queue=...)`);
RabbitMQ puts a copy of the event in each. Celery finds a task by the name in the message's
headers, so one task per event type (the dispatcher, `EventConsumerTask`) is registered, and
it picks the subscriber of the copy it received: the subscriber whose queue the routing key
names (a retry, a delayed delivery or a replay carries its queue's name), else the one
subscriber of that event type among the queues this worker consumes. Celery tells a task
its message's exchange and routing key but not its queue (`Request.delivery_info`), hence
the rule that a worker consumes at most one subscriber queue per event type, checked when it
starts (`check_worker_queues`).

Documented in docs/architecture.md (*Consumers*, *Delivery guarantees*).
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import Task, shared_task
from celery.signals import celeryd_after_setup
from django.db import connection, transaction

from fitness import topology
from messaging.correlation import correlation_scope, log_scope
from messaging.dead_letters.failures import consumer_failure_record
from messaging.errors import PermanentError
from messaging.events import Envelope, Event, parse_message
from messaging.models import EventActivity, ProcessedEvent
from messaging.outbox import StagedEvents, staged_publishes
from observability import metrics

logger = logging.getLogger("messaging.consumer")

# Celery's native delayed delivery prefixes the routing key with 28 binary digits.
_DELAY_PREFIX = re.compile(r"^(?:[01]\.){28}")

Handler = Callable[[Any, Envelope], Any]


@dataclass(frozen=True)
class Subscription:
    """One subscriber's handler of one event type."""

    consumer: str  # the name in the idempotency records, the logs and the audit trail
    event_type: str
    queue: str | None  # its subscriber queue; None: whichever queue the event came from
    accepted: tuple[int, ...]
    run: Callable[..., str]
    dead_letter_hook: Callable[[Any, Envelope, BaseException], None] | None
    retry_hook: Callable[[Any, Envelope, BaseException], None] | None
    options: dict  # Celery task options for its deliveries (time limits)


# event type -> subscriber queue (None: any) -> its subscription
_SUBSCRIPTIONS: dict[str, dict[str | None, Subscription]] = {}
# event type -> the subscription of this worker's queues (`bind_worker_queues`, at worker start)
_WORKER_SUBSCRIPTIONS: dict[str, Subscription] = {}
# event type -> its dispatching task
_DISPATCHERS: dict[str, Any] = {}


@dataclass(frozen=True)
class Delivery:
    """Which delivery of an event a subscriber is handling: for its activity records."""

    attempt: int = 1
    queue: str = ""
    worker: str = ""
    # RabbitMQ delivered this copy before (a worker died holding it), or it is a retry:
    # an earlier attempt may have committed, so the idempotency record is looked up first
    redelivered: bool = False


_ACTIVITY_COLUMNS = (
    f"{EventActivity._meta.db_table} (event_id, event_type, correlation_id, task_id, subscriber, queue, kind,"
    " attempt, duration_ms, error, worker, at)"
)
# not now(): that is the transaction's start, before the handler ran
_ACTIVITY_VALUES = "%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, clock_timestamp()"


def _activity_params(envelope: Envelope, payload: Any, subscriber: str, delivery: Delivery, kind: str,
                     duration_ms: float | None, error: str) -> list:
    task_id = getattr(payload, "task_id", None)
    return [envelope.event_id, envelope.event_type, envelope.correlation_id or "",
            task_id if isinstance(task_id, int) else None, subscriber, delivery.queue, kind, delivery.attempt,
            duration_ms, error[:4000], delivery.worker]


def activity_record(envelope: Envelope, payload: Any, subscriber: str, delivery: Delivery, kind: str, *,
                    duration_ms: float | None = None, error: str = "") -> None:
    """Append what happened to this event in `subscriber` to its timeline (EventActivity)."""
    # one plain INSERT (no ORM model building): this runs for every processed event, in the AI's hot path too
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_ACTIVITY_COLUMNS} VALUES ({_ACTIVITY_VALUES})",
            _activity_params(envelope, payload, subscriber, delivery, kind, duration_ms, error),
        )


def claim_and_record(consumer: str, envelope: Envelope, payload: Any, delivery: Delivery,
                     duration_ms: float, staged: StagedEvents | None = None) -> bool:
    """Record that `consumer` processed this event, its PROCESSED activity row and the outbox rows
    of the events its handler published (`staged`) in one statement; False when the event was
    already recorded (the caller rolls back, the staged rows with it).

    Must run inside the handler's transaction, after the handler: a concurrent copy of the
    same event waits on the unique index until the first commits (then finds it) or rolls back.
    """
    outbox, outbox_params = staged.as_cte("outbox") if staged is not None else ("", [])
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH claim AS (INSERT INTO {ProcessedEvent._meta.db_table} (consumer, event_id, event_type,"
            " processed_at) VALUES (%s, %s, %s, now()) ON CONFLICT (consumer, event_id) DO NOTHING RETURNING id),"
            f" activity AS (INSERT INTO {_ACTIVITY_COLUMNS} SELECT {_ACTIVITY_VALUES} FROM claim RETURNING id)"
            + (f", {outbox}" if outbox else "")
            + " SELECT id" + (", (SELECT json_object_agg(event_id, id) FROM outbox)" if outbox else ", NULL")
            + " FROM activity",
            [consumer, envelope.event_id, envelope.event_type,
             *_activity_params(envelope, payload, consumer, delivery, EventActivity.Kind.PROCESSED, duration_ms, ""),
             *outbox_params],
        )
        row = cursor.fetchone()
    if row is None:
        return False
    if staged is not None:
        staged.written(row[1])
    return True


class _AlreadyProcessed(Exception):
    """Raised inside the handler's transaction to roll back a copy whose event was already processed."""


class NoSubscriber(PermanentError):
    """The message reached a queue for which its event type has no handler here."""


def subscriptions(event_type: str | None = None) -> list[Subscription]:
    if event_type is None:
        return [sub for by_queue in _SUBSCRIPTIONS.values() for sub in by_queue.values()]
    return list(_SUBSCRIPTIONS.get(event_type, {}).values())


def subscription_for(event_type: str, routing_key: str) -> Subscription:
    """The subscription a copy of `event_type` with `routing_key` is for (see the module docstring)."""
    by_queue = _SUBSCRIPTIONS.get(event_type, {})
    queue = _DELAY_PREFIX.sub("", routing_key or "")
    if queue in by_queue:
        return by_queue[queue]
    local = _WORKER_SUBSCRIPTIONS.get(event_type)
    if local is not None:
        return local
    if None in by_queue:
        return by_queue[None]
    raise NoSubscriber(
        f"no subscriber of {event_type} for routing key {routing_key!r} in this worker "
        f"(subscriber queues: {', '.join(sorted(str(q) for q in by_queue)) or 'none'})"
    )


def check_worker_queues(queues: list[str] | set[str]) -> dict[str, Subscription]:
    """The subscription of each event type among `queues`; ValueError when a worker would
    consume two subscriber queues of one event type (it could not tell their copies apart)."""
    chosen: dict[str, Subscription] = {}
    problems = []
    for event_type, by_queue in sorted(_SUBSCRIPTIONS.items()):
        mine = [sub for queue, sub in by_queue.items() if queue is not None and queue in queues]
        if len(mine) > 1:
            problems.append(f"{event_type} ({', '.join(sorted(sub.queue for sub in mine))})")
        elif mine:
            chosen[event_type] = mine[0]
    if problems:
        raise ValueError(
            "a worker consumes at most one subscriber queue per event type; these -Q queues share "
            + "; ".join(problems) + ": run them in separate workers"
        )
    return chosen


def bind_worker_queues(queues: list[str] | set[str]) -> None:
    """At worker start: pick this worker's subscription per event type and give its
    dispatcher that subscription's task options (time limits), which Celery reads per task."""
    chosen = check_worker_queues(queues)
    _WORKER_SUBSCRIPTIONS.clear()
    _WORKER_SUBSCRIPTIONS.update(chosen)
    from fitness.celery import app

    for event_type, sub in chosen.items():
        task = app.tasks.get(event_type)
        for option, value in sub.options.items():
            if task is not None:
                setattr(task, option, value)


class EventConsumerTask(Task):
    """Celery task base for event consumers: retry policy and failure logging."""

    autoretry_for = (Exception,)
    dont_autoretry_for = (PermanentError,)
    # The countdown and the number of retries come from the queue's policy (`retry`).
    max_retries = topology.SEED_RETRIES.max_retries
    retry_backoff = False
    retry_jitter = False
    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    typing = False  # the message shape is checked by the envelope, not by Celery

    def subscription(self, request=None) -> Subscription | None:
        """The subscription of the message being processed (None: not one of ours)."""
        request = request if request is not None else self.request
        try:
            return subscription_for(self.name, (request.delivery_info or {}).get("routing_key") or "")
        except NoSubscriber:
            return None

    def subscription_of_queue(self, queue: str) -> Subscription | None:
        """The subscription of this event type's copies in `queue` (e.g. a dead letter's), if any."""
        try:
            return subscription_for(self.name, queue)
        except NoSubscriber:
            return None

    @property
    def consumer_name(self) -> str:
        sub = self.subscription()
        return sub.consumer if sub else ""

    def signature_from_request(self, request=None, args=None, kwargs=None, queue=None, **options):
        # A retry goes back to the queue of the subscriber it failed for, with that queue's
        # name for routing key (bound to that queue alone), never to the event type's key,
        # which would give every subscriber a copy.
        if queue is None:
            sub = self.subscription(request)
            queue = sub.queue if sub and sub.queue else self._work_queue(
                request if request is not None else self.request)
        return super().signature_from_request(request, args, kwargs, queue=queue, **options)

    def retry(self, args=None, kwargs=None, exc=None, throw=True, eta=None, countdown=None, max_retries=None,
              **options):
        # Celery's autoretry calls this for every retried exception: the policy of the work
        # queue the message came from decides the countdown and when to give up.
        policy = self._retry_policy()
        if eta is None and countdown is None:
            countdown = policy.delay(self.request.retries)
        try:
            return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries=policy.max_retries, **options)
        finally:
            # Celery keeps the override on the task (one object per process) when it gives up
            self.__dict__.pop("override_max_retries", None)

    def _retry_policy(self) -> topology.RetryPolicy:
        sub = self.subscription()
        return topology.retry_policy(sub.queue if sub and sub.queue else self._work_queue(self.request))

    @staticmethod
    def _work_queue(request) -> str | None:
        """The work queue a message came from: its routing key, without a delay prefix."""
        routing_key = _DELAY_PREFIX.sub("", (request.delivery_info or {}).get("routing_key") or "")
        return routing_key if routing_key in topology.queue_names() else None

    def _event_fields(self, kwargs: dict) -> str:
        body = kwargs.get("event") if isinstance(kwargs, dict) else None
        body = body if isinstance(body, dict) else {}
        return log_fields(body.get("event_id"), body.get("event_type"), body.get("correlation_id"), self.consumer_name)

    def delivery(self, sub: Subscription | None = None) -> Delivery:
        sub = sub or self.subscription()
        queue = (sub.queue if sub and sub.queue else None) or self._work_queue(self.request) or ""
        retries = self.request.retries or 0
        redelivered = bool((self.request.delivery_info or {}).get("redelivered")) or retries > 0
        return Delivery(attempt=retries + 1, queue=queue, worker=self.request.hostname or "", redelivered=redelivered)

    def _record_activity(self, kwargs, kind: str, exc: BaseException) -> None:
        sub = self.subscription()
        if sub is None:
            return
        try:
            envelope, payload = parse_message((kwargs or {}).get("event"))
        except PermanentError:
            return  # not an event: the dead letters' history has it
        try:
            activity_record(envelope, payload, sub.consumer, self.delivery(sub), kind,
                            error=f"{exc.__class__.__name__}: {exc}")
        except Exception:
            logger.exception("could not record the %s activity of %s", kind, self._event_fields(kwargs))

    def on_retry(self, exc, task_id, args, kwargs, einfo) -> None:
        self._record_activity(kwargs, EventActivity.Kind.RETRIED, exc)
        metrics.event_failed(self.name, self.consumer_name)
        policy = self._retry_policy()
        logger.warning(
            "attempt %s of %s failed, retrying in %ss: %s: %s %s",
            self.request.retries + 1, policy.max_retries + 1, policy.delay(self.request.retries),
            exc.__class__.__name__, exc, self._event_fields(kwargs),
        )
        sub = self.subscription()
        self._call_hook(sub.retry_hook if sub else None, "retry", kwargs, exc)

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        self._record_activity(kwargs, EventActivity.Kind.DEAD_LETTERED, exc)
        metrics.event_dead_lettered(self.name, self.consumer_name)
        if isinstance(exc, PermanentError):
            reason = "permanent error, not retried"
        else:
            reason = f"attempt {self.request.retries + 1} of {self._retry_policy().max_retries + 1} failed, " \
                     "retries exhausted"
        logger.error(
            "dead-lettering (%s): %s: %s %s", reason, exc.__class__.__name__, exc, self._event_fields(kwargs)
        )
        self._record_failure(exc, task_id, reason)
        sub = self.subscription()
        self._call_hook(sub.dead_letter_hook if sub else None, "dead-letter", kwargs, exc)

    def _call_hook(self, hook, what: str, kwargs, exc: BaseException) -> None:
        if hook is None:
            return
        try:
            envelope, payload = parse_message((kwargs or {}).get("event"))
        except PermanentError:
            return  # not an event we can describe to the hook
        try:
            hook(payload, envelope, exc)
        except Exception:
            logger.exception("the %s hook of %s failed %s", what, self.consumer_name, self._event_fields(kwargs))

    def _record_failure(self, exc: BaseException, task_id: str, reason: str) -> None:
        # basic.reject cannot carry the error, so it goes to the dead letter's history in
        # PostgreSQL (before the message is rejected), where `manage.py dlq show` finds it.
        sub = self.subscription()
        queue = sub.queue if sub and sub.queue else self._work_queue(self.request)
        if queue is None:
            return
        try:
            consumer_failure_record(
                queue=queue, event_id=task_id, event_type=self.name, consumer=self.consumer_name,
                error=f"{exc.__class__.__name__}: {exc} ({reason})",
            )
        except Exception:
            logger.exception("could not record the failure of %s", task_id)


def log_fields(event_id: Any, event_type: Any, correlation_id: Any, consumer: str) -> str:
    """The key=value fields every consumer log line carries, so one event can be grepped."""
    return f"event_id={event_id} event_type={event_type} correlation_id={correlation_id} consumer={consumer}"


def log_context(envelope: Envelope, payload: Any, consumer: str) -> dict[str, Any]:
    """The fields every log line of a handler carries (fitness.logging adds them), beside the
    correlation id; `task_id` when the event's payload names a task."""
    task_id = getattr(payload, "task_id", None)
    context = {"event_id": str(envelope.event_id), "event_type": envelope.event_type, "consumer": consumer}
    return {**context, "task_id": task_id} if isinstance(task_id, int) else context


def already_processed(consumer: str, envelope: Envelope) -> bool:
    return ProcessedEvent.objects.filter(consumer=consumer, event_id=envelope.event_id).exists()


def claim_event(consumer: str, envelope: Envelope) -> bool:
    """Record that `consumer` handled this event; False when it already had (the non-atomic
    consumers' record, written after their handler; atomic ones use `claim_and_record`).

    A concurrent delivery of the same event blocks on the unique index until the first one
    commits (then sees it) or rolls back.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {ProcessedEvent._meta.db_table} (consumer, event_id, event_type, processed_at)"
            " VALUES (%s, %s, %s, now()) ON CONFLICT (consumer, event_id) DO NOTHING RETURNING id",
            [consumer, envelope.event_id, envelope.event_type],
        )
        return cursor.fetchone() is not None


def event_consumer(
    *contracts: type[Event],
    name: str,
    queue: str | None = None,
    on_start: Callable[[Any, Envelope], None] | None = None,
    on_dead_letter: Callable[[Any, Envelope, BaseException], None] | None = None,
    on_retry: Callable[[Any, Envelope, BaseException], None] | None = None,
    atomic: bool = True,
    **task_options: Any,
) -> Callable[[Handler], Task]:
    """Register `handler(event, envelope)` as the consumer of `contracts`.

    `contracts` are the schema versions of one event type that this handler accepts;
    `name` identifies the consumer in the idempotency records and the logs (keep it
    stable); `queue` is its subscriber queue (`fitness.topology.Subscriber`), which must
    subscribe to the event type (None: the event type's one handler, whatever the queue).
    `on_start(event, envelope)` runs and commits before the handler's
    transaction (e.g. to show "in progress"); it must be idempotent. `on_dead_letter(event,
    envelope, exc)` runs once the event is given up on (e.g. to mark its task failed), and
    `on_retry(event, envelope, exc)` after an attempt failed and its retry is scheduled (e.g.
    to show that the work is under way when it takes seconds); both run outside the
    handler's transaction and must be idempotent.

    `atomic=False` is for handlers whose effects leave the system (pushes): no rollback can
    take those back, so the handler runs outside a transaction, makes its own progress
    durable as it goes and must be safe to run again (e.g. one record per recipient, sent
    once); the event is recorded as processed when it returns, and a redelivery after that
    is skipped. Extra keyword arguments are Celery task options (e.g. time limits).
    """
    if not contracts:
        raise TypeError("event_consumer needs at least one event contract")
    event_types = {contract.event_type for contract in contracts}
    if len(event_types) != 1:
        raise TypeError(f"one consumer handles one event type, got {sorted(event_types)}")
    (event_type,) = event_types
    accepted = {contract.schema_version for contract in contracts}
    if queue is not None:
        declared = [sub for sub in topology.WORK_QUEUES if sub.name == queue]
        if not declared or event_type not in declared[0].events:
            raise TypeError(f"{name}: queue {queue!r} is not a subscriber of {event_type} in fitness/topology.py")

    def decorator(handler: Handler) -> Task:
        @functools.wraps(handler)
        def run(event: Any = None, _delivery: Delivery | None = None, **unexpected: Any) -> str:
            delivery = _delivery or Delivery()
            if unexpected:
                raise PermanentError(f"unexpected message arguments: {sorted(unexpected)}")
            envelope, payload = parse_message(event)
            if envelope.event_type != event_type or envelope.schema_version not in accepted:
                raise PermanentError(
                    f"{name} accepts {event_type} versions {sorted(accepted)}, "
                    f"got {envelope.event_type} v{envelope.schema_version}"
                )
            fields = log_fields(envelope.event_id, envelope.event_type, envelope.correlation_id, name)
            context = log_context(envelope, payload, name)
            started = time.monotonic()
            with correlation_scope(envelope.correlation_id), log_scope(**context):
                if on_start is not None and not already_processed(name, envelope):
                    on_start(payload, envelope)
                if atomic:
                    if delivery.redelivered and already_processed(name, envelope):
                        return _skipped(envelope, payload, name, delivery, fields)
                    try:
                        # the events the handler publishes go into the closing statement
                        with transaction.atomic(), staged_publishes() as staged:
                            handler(payload, envelope)
                            duration_ms = (time.monotonic() - started) * 1000
                            # in the handler's transaction: the records commit with the effects
                            if not claim_and_record(name, envelope, payload, delivery, duration_ms, staged):
                                raise _AlreadyProcessed
                    except _AlreadyProcessed:
                        return _skipped(envelope, payload, name, delivery, fields)
                    except Exception:
                        # e.g. an effect's unique constraint, met because the event was processed meanwhile
                        if not delivery.redelivered and _processed_meanwhile(name, envelope):
                            return _skipped(envelope, payload, name, delivery, fields)
                        raise
                else:
                    if already_processed(name, envelope):
                        return _skipped(envelope, payload, name, delivery, fields)
                    handler(payload, envelope)
                    duration_ms = (time.monotonic() - started) * 1000
                    with transaction.atomic():
                        claim_event(name, envelope)
                        activity_record(envelope, payload, name, delivery, EventActivity.Kind.PROCESSED,
                                        duration_ms=duration_ms)
            logger.info("processed in %.1f ms %s", duration_ms, fields,
                        extra={**context, "correlation_id": envelope.correlation_id,
                               "duration_ms": round(duration_ms, 1)})
            return "processed"

        by_queue = _SUBSCRIPTIONS.setdefault(event_type, {})
        if queue in by_queue and by_queue[queue].consumer != name:
            raise TypeError(f"{event_type} already has the subscriber {by_queue[queue].consumer!r} on queue "
                            f"{queue!r}; cannot add {name!r}: declare a queue of its own")
        by_queue[queue] = Subscription(
            consumer=name, event_type=event_type, queue=queue, accepted=tuple(sorted(accepted)),
            run=metrics.consumer_observed(event_type, name)(run),
            dead_letter_hook=on_dead_letter, retry_hook=on_retry, options=dict(task_options),
        )
        return _dispatcher(event_type)

    return decorator


def _processed_meanwhile(name: str, envelope: Envelope) -> bool:
    try:
        return already_processed(name, envelope)
    except Exception:  # the database itself failed: the handler's error is the one to retry on
        return False


def _skipped(envelope: Envelope, payload: Any, name: str, delivery: Delivery, fields: str) -> str:
    logger.info("skipped: already processed %s", fields)
    activity_record(envelope, payload, name, delivery, EventActivity.Kind.SKIPPED)
    return "duplicate"


def _dispatcher(event_type: str):
    """The one Celery task of `event_type`: runs the subscription of the copy it received."""
    if event_type not in _DISPATCHERS:
        def dispatch(self: EventConsumerTask, event: Any = None, **unexpected: Any) -> str:
            sub = subscription_for(event_type, (self.request.delivery_info or {}).get("routing_key") or "")
            return sub.run(event, _delivery=self.delivery(sub), **unexpected)

        dispatch.__name__ = dispatch.__qualname__ = f"dispatch_{event_type}"
        _DISPATCHERS[event_type] = shared_task(name=event_type, base=EventConsumerTask, bind=True)(dispatch)
    return _DISPATCHERS[event_type]


@celeryd_after_setup.connect
def _bind_worker(sender, instance, **_: object) -> None:
    # In the worker's main process, before the pool forks. A worker that consumes two
    # subscriber queues of one event type could not tell their copies apart: it does not start.
    consume_from = instance.app.amqp.queues.consume_from
    queues = set(consume_from or instance.app.amqp.queues)
    try:
        bind_worker_queues(queues)
    except ValueError as exc:
        print(f"worker not started: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
