"""The base consumer: every event handler is registered through `event_consumer`.

    @event_consumer(TaskSubmittedEvent, name="ml.read_task_photo")
    def read_task_photo(event: TaskSubmittedEvent, envelope: Envelope) -> None:
        ...business logic only...

What the decorator gives every handler, so that no handler repeats it:

* the message is parsed into its envelope and typed payload; a malformed message or an
  unknown event type/version is dead-lettered at once (retrying cannot fix it);
* idempotency: the handler runs in a database transaction that also records
  (consumer, event_id); a redelivered event whose record exists is skipped, and one whose
  earlier attempt failed finds no record and no half-done effects;
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

The Celery task is named after the event type: that name is the only thing producer and
consumer share, so either side can be deployed without the other.

Documented in docs/architecture.md (*Consumers*, *Delivery guarantees*).
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from celery import Task, shared_task
from django.db import connection, transaction

from fitness import topology
from messaging.correlation import correlation_scope, log_scope
from messaging.dead_letters.failures import consumer_failure_record
from messaging.errors import PermanentError
from messaging.events import Envelope, Event, parse_message
from messaging.models import ProcessedEvent
from observability import metrics

logger = logging.getLogger("messaging.consumer")

# Celery's native delayed delivery prefixes the routing key with 28 binary digits.
_DELAY_PREFIX = re.compile(r"^(?:[01]\.){28}")

Handler = Callable[[Any, Envelope], Any]

# event type -> consumer name: one consumer per event type (see fitness.topology).
_CONSUMERS: dict[str, str] = {}


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

    consumer_name: str = ""
    accepted_versions: tuple[int, ...] = ()  # the schema versions of its event type it accepts
    # Called with (event, envelope, exception) once the event is dead-lettered.
    dead_letter_hook: Callable[[Any, Envelope, BaseException], None] | None = None
    # Called with (event, envelope, exception) when an attempt failed and a retry is scheduled.
    retry_hook: Callable[[Any, Envelope, BaseException], None] | None = None

    def signature_from_request(self, request=None, args=None, kwargs=None, queue=None, **options):
        # A retry goes back to the queue the message came from. Celery would route it by
        # the default queue (there is none, on purpose); by our topology's convention the
        # routing key names the queue, once the delayed-delivery prefix is stripped.
        if queue is None:
            queue = self._work_queue(request if request is not None else self.request)
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
        return topology.retry_policy(self._work_queue(self.request))

    @staticmethod
    def _work_queue(request) -> str | None:
        """The work queue a message came from: its routing key, without a delay prefix."""
        routing_key = _DELAY_PREFIX.sub("", (request.delivery_info or {}).get("routing_key") or "")
        return routing_key if routing_key in topology.queue_names() else None

    def _event_fields(self, kwargs: dict) -> str:
        body = kwargs.get("event") if isinstance(kwargs, dict) else None
        body = body if isinstance(body, dict) else {}
        return log_fields(body.get("event_id"), body.get("event_type"), body.get("correlation_id"), self.consumer_name)

    def on_retry(self, exc, task_id, args, kwargs, einfo) -> None:
        metrics.event_failed(self.name, self.consumer_name)
        policy = self._retry_policy()
        logger.warning(
            "attempt %s of %s failed, retrying in %ss: %s: %s %s",
            self.request.retries + 1, policy.max_retries + 1, policy.delay(self.request.retries),
            exc.__class__.__name__, exc, self._event_fields(kwargs),
        )
        self._call_hook(self.retry_hook, "retry", kwargs, exc)

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
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
        self._call_hook(self.dead_letter_hook, "dead-letter", kwargs, exc)

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
        queue = self._work_queue(self.request)
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
    """Record that `consumer` handles this event; False when it already has.

    Must run inside the handler's transaction. A concurrent delivery of the same event
    blocks on the unique index until the first one commits (then sees it) or rolls back.
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
    on_start: Callable[[Any, Envelope], None] | None = None,
    on_dead_letter: Callable[[Any, Envelope, BaseException], None] | None = None,
    on_retry: Callable[[Any, Envelope, BaseException], None] | None = None,
    atomic: bool = True,
    **task_options: Any,
) -> Callable[[Handler], Task]:
    """Register `handler(event, envelope)` as the consumer of `contracts`.

    `contracts` are the schema versions of one event type that this handler accepts;
    `name` identifies the consumer in the idempotency records and the logs (keep it
    stable). `on_start(event, envelope)` runs and commits before the handler's
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

    def decorator(handler: Handler) -> Task:
        @functools.wraps(handler)
        def run(self: EventConsumerTask, event: Any = None, **unexpected: Any) -> str:
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
                    with transaction.atomic():
                        if not claim_event(name, envelope):
                            logger.info("skipped: already processed %s", fields)
                            return "duplicate"
                        handler(payload, envelope)
                else:
                    if already_processed(name, envelope):
                        logger.info("skipped: already processed %s", fields)
                        return "duplicate"
                    handler(payload, envelope)
                    with transaction.atomic():
                        claim_event(name, envelope)
            duration_ms = (time.monotonic() - started) * 1000
            logger.info("processed in %.1f ms %s", duration_ms, fields,
                        extra={**context, "correlation_id": envelope.correlation_id,
                               "duration_ms": round(duration_ms, 1)})
            return "processed"

        registered = _CONSUMERS.setdefault(event_type, name)
        if registered != name:
            raise TypeError(f"{event_type} already has the consumer {registered!r}; cannot add {name!r}")
        return shared_task(
            name=event_type,
            base=EventConsumerTask,
            bind=True,
            consumer_name=name,
            accepted_versions=tuple(sorted(accepted)),
            dead_letter_hook=staticmethod(on_dead_letter) if on_dead_letter else None,
            retry_hook=staticmethod(on_retry) if on_retry else None,
            **task_options,
        )(metrics.consumer_observed(event_type, name)(run))

    return decorator
