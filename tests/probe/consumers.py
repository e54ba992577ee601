import os
import time

from fitness import topology
from messaging.consumers import event_consumer
from messaging.contracts import TaskSubmittedEvent
from messaging.errors import PermanentError, TransientError
from tests.probe.events import (
    ProbeCrashEvent,
    ProbeExternalEvent,
    ProbeFailingEvent,
    ProbeFixableEvent,
    ProbeForwardedEvent,
    ProbeRecordedEvent,
    ProbeSlowEvent,
)
from tests.probe.late import LATE_QUEUE
from tests.probe.models import ProbeEffect


@event_consumer(ProbeRecordedEvent, name="tests.record_probe")
def record_probe(event: ProbeRecordedEvent, envelope) -> None:
    ProbeEffect.objects.create(
        label=event.label, event_id=envelope.event_id, correlation_id=envelope.correlation_id or ""
    )


@event_consumer(ProbeFailingEvent, name="tests.fail_probe")
def fail_probe(event: ProbeFailingEvent, envelope) -> None:
    with open(event.attempt_log, "a") as log:
        log.write(f"{time.time():.3f}\n")
    if event.permanent:
        raise PermanentError(f"probe {event.label} is broken for good")
    raise TransientError(f"probe {event.label} fails every time")


def _record_dead_letter(event, envelope, exc: BaseException) -> None:
    # like ml's hook that marks the task failed: the effect tests look for
    ProbeEffect.objects.create(label=f"dead-lettered:{event.label}", event_id=envelope.event_id,
                               correlation_id=str(exc)[:200])


@event_consumer(ProbeCrashEvent, name="tests.crash_probe", on_dead_letter=_record_dead_letter)
def crash_probe(event: ProbeCrashEvent, envelope) -> None:
    os._exit(13)  # what a segfault or the OOM killer does to the pool process


@event_consumer(ProbeSlowEvent, name="tests.slow_probe")
def slow_probe(event: ProbeSlowEvent, envelope) -> None:
    time.sleep(event.seconds)
    ProbeEffect.objects.create(label=event.label, event_id=envelope.event_id)


@event_consumer(ProbeFixableEvent, name="tests.fixable_probe", on_dead_letter=_record_dead_letter)
def fixable_probe(event: ProbeFixableEvent, envelope) -> None:
    if not os.path.exists(event.fixed_when):
        raise PermanentError(f"probe {event.label} hits a bug (not fixed yet)")
    ProbeEffect.objects.create(label=event.label, event_id=envelope.event_id)


class _RolledBack(Exception):
    pass


@event_consumer(ProbeForwardedEvent, name="tests.forward_probe")
def forward_probe(event: ProbeForwardedEvent, envelope) -> None:
    from django.db import transaction

    from messaging.outbox import publish_event

    for label in event.labels:
        publish_event(ProbeRecordedEvent(label=label))
    if event.in_savepoint:
        try:
            with transaction.atomic():
                for label in event.in_savepoint:
                    publish_event(ProbeRecordedEvent(label=label))
                if event.roll_back:
                    raise _RolledBack
        except _RolledBack:
            pass


@event_consumer(ProbeExternalEvent, name="tests.external_probe", atomic=False)
def external_probe(event: ProbeExternalEvent, envelope) -> None:
    from django.db import connection

    # like a push: outside any transaction, its own record committed at once
    ProbeEffect.objects.create(label=f"{event.label}:in_atomic={connection.in_atomic_block}",
                               event_id=envelope.event_id)


if LATE_QUEUE in topology.queue_names():  # in the worker of tests/late_subscriber.py only

    @event_consumer(TaskSubmittedEvent, name="tests.late_subscriber", queue=LATE_QUEUE)
    def late_subscriber(event: TaskSubmittedEvent, envelope) -> None:
        failing = os.environ.get("LATE_SUBSCRIBER_FAILS_FOR", "")
        if failing and os.path.exists(failing):
            raise PermanentError(f"the late subscriber cannot handle task {event.task_id}")
        ProbeEffect.objects.create(label=f"late:{event.task_id}", event_id=envelope.event_id,
                                   correlation_id=envelope.correlation_id or "")
