"""The timeline of one upload (or any event chain), for the operator's admin.

Asked by a task id, an event id or a correlation id (the request's X-Request-ID, which every
event that request caused, and every event their consumers published, carries), it gathers
in time order:

* the request: the task's creation (web);
* the outbox: each event's row written in the request's (or consumer's) transaction, and its
  publication (RabbitMQ's confirm);
* the audit log's record of each event (the `audit` subscriber);
* every subscriber's attempts (`messaging.EventActivity`): processed, how long, on which
  worker; retried (attempt n, the error); dead-lettered;
* the dead letters' history: dead-lettered into which `.dlq`, replayed or purged by whom;
* the effects: the AI's reading, the owner's confirmation, the notifications sent.

Reads only; one query per source, whatever the number of events.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from audit.models import EventLogEntry
from messaging.models import DeadLetter, EventActivity, OutboxMessage
from notifications.models import Notification
from tasks.models import LaundryTask, Reading

_TASK = re.compile(r"^(?:task\s*)?#?(\d{1,12})$", re.IGNORECASE)


@dataclass(frozen=True)
class Step:
    at: datetime
    process: str  # web, relay, worker-ai, audit, …
    what: str
    detail: str = ""
    event_type: str = ""
    event_id: str = ""
    kind: str = "info"  # info, ok, retry, failure


@dataclass
class Timeline:
    query: str
    subject: str  # what the query was taken for
    event_ids: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)

    @property
    def started_at(self) -> datetime | None:
        return self.steps[0].at if self.steps else None


class NotFound(LookupError):
    pass


def _event_ids_for_correlation(correlation_id: str) -> set[str]:
    ids = {str(e) for e in EventLogEntry.objects.filter(correlation_id=correlation_id).values_list("event_id",
                                                                                                   flat=True)}
    ids |= {str(e) for e in EventActivity.objects.filter(correlation_id=correlation_id).values_list("event_id",
                                                                                                    flat=True)}
    ids |= {str(e) for e in OutboxMessage.objects.filter(envelope__correlation_id=correlation_id)
            .values_list("event_id", flat=True)}
    return ids


def _correlations_of(event_ids: set[str]) -> set[str]:
    found = set(EventLogEntry.objects.filter(event_id__in=event_ids).values_list("correlation_id", flat=True))
    found |= {row for row in OutboxMessage.objects.filter(event_id__in=event_ids)
              .values_list("envelope__correlation_id", flat=True) if row}
    return {c for c in found if c}


def timeline_for(query: str) -> Timeline:
    """The timeline of task `query` ("12", "task 12"), event id `query` (a UUID), or correlation id `query`."""
    query = (query or "").strip()
    if not query:
        raise NotFound("give a task id, an event id or a correlation id")
    task_id: int | None = None
    if match := _TASK.match(query):
        task_id = int(match.group(1))
        subject = f"task {task_id}"
        event_ids = {str(e) for e in EventLogEntry.objects.filter(task_id=task_id).values_list("event_id", flat=True)}
        event_ids |= {str(e) for e in EventActivity.objects.filter(task_id=task_id).values_list("event_id",
                                                                                                flat=True)}
        event_ids |= {str(e) for e in OutboxMessage.objects.filter(envelope__payload__task_id=task_id)
                      .values_list("event_id", flat=True)}
        if not event_ids and not LaundryTask.objects.filter(pk=task_id).exists():
            raise NotFound(f"no task {task_id} and no event about it")
    else:
        try:
            event_id = str(uuid.UUID(query))
        except ValueError:
            event_id = None
        if event_id is not None:
            subject = f"event {event_id} and the events of its request"
            correlations = _correlations_of({event_id})
            event_ids = {event_id}.union(*(_event_ids_for_correlation(c) for c in correlations))
        else:
            subject = f"correlation id {query}"
            event_ids = _event_ids_for_correlation(query)
        if not event_ids:
            raise NotFound(f"no event has the {'event' if event_id else 'correlation'} id {query!r}")
        task_ids = {t for t in EventLogEntry.objects.filter(event_id__in=event_ids).values_list("task_id", flat=True)
                    if t}
        task_id = min(task_ids) if len(task_ids) == 1 else None
    result = Timeline(query=query, subject=subject, event_ids=sorted(event_ids))
    result.steps = sorted(_steps(event_ids, task_id), key=lambda step: step.at)
    return result


def _steps(event_ids: set[str], task_id: int | None):
    types: dict[str, str] = {}
    for row in OutboxMessage.objects.filter(event_id__in=event_ids).order_by("pk"):
        eid = str(row.event_id)
        types[eid] = row.event_type
        producer = (row.envelope or {}).get("producer", "")
        yield Step(row.created_at, producer, "outbox row written", f"in the {producer} transaction",
                   row.event_type, eid)
        if row.published_at:
            yield Step(row.published_at, "relay", "published to fitness.events",
                       f"routing key {row.queue}; {row.publish_attempts} attempt(s)", row.event_type, eid, "ok")
        elif row.discarded_at:
            yield Step(row.discarded_at, "operator", "discarded from the outbox", row.discard_reason,
                       row.event_type, eid, "failure")
    for entry in EventLogEntry.objects.filter(event_id__in=event_ids):
        eid = str(entry.event_id)
        types[eid] = entry.event_type
        yield Step(entry.recorded_at, "audit", "recorded in the event log",
                   f"v{entry.schema_version} from {entry.producer}", entry.event_type, eid, "ok")
    for act in EventActivity.objects.filter(event_id__in=event_ids):
        eid = str(act.event_id)
        if act.kind == EventActivity.Kind.PROCESSED:
            what, detail, kind = (f"{act.subscriber}: processed",
                                  f"attempt {act.attempt}, {act.duration_ms or 0:.1f} ms", "ok")
        elif act.kind == EventActivity.Kind.SKIPPED:
            what, detail, kind = f"{act.subscriber}: skipped (already processed)", f"attempt {act.attempt}", "info"
        elif act.kind == EventActivity.Kind.RETRIED:
            what, detail, kind = f"{act.subscriber}: attempt {act.attempt} failed, retrying", act.error, "retry"
        else:
            what, detail, kind = f"{act.subscriber}: attempt {act.attempt} failed, dead-lettered", act.error, "failure"
        where = f"{act.queue} on {act.worker}" if act.worker else act.queue
        yield Step(act.at, where, what, detail, act.event_type, eid, kind)
    for dead in DeadLetter.objects.filter(event_id__in=event_ids):
        if dead.last_dead_at:
            yield Step(dead.last_dead_at, "RabbitMQ", f"dead-lettered into {dead.queue}.dlq",
                       f"{dead.reason}; {dead.deaths} death(s); {dead.error}", dead.event_type, dead.event_id,
                       "failure")
        if dead.replayed_at:
            yield Step(dead.replayed_at, "operator", f"replayed to {dead.queue} by {dead.replayed_by}",
                       f"{dead.replays} replay(s)", dead.event_type, dead.event_id, "retry")
        if dead.purged_at:
            yield Step(dead.purged_at, "operator", f"purged from {dead.queue}.dlq by {dead.purged_by}", "",
                       dead.event_type, dead.event_id, "failure")
    for note in Notification.objects.filter(event_id__in=event_ids).select_related("recipient"):
        yield Step(note.created_at, "notifications", f"notification to {note.recipient}: {note.title}",
                   f"{note.body} ({note.status})", types.get(str(note.event_id), ""), str(note.event_id), "ok")
    if task_id is not None:
        task = LaundryTask.objects.filter(pk=task_id).select_related("helper", "confirmed_by").first()
        if task is not None:
            yield Step(task.created_at, "web", f"request: task {task.pk} submitted by {task.helper}",
                       f"photo {task.photo_size} bytes; now {task.status}")
            if task.confirmed_at:
                yield Step(task.confirmed_at, "web (admin)", f"confirmed by {task.confirmed_by}",
                           ", ".join(f"{k}={v}" for k, v in (task.confirmed_labels or {}).items()), kind="ok")
        reading = Reading.objects.filter(task_id=task_id).first()
        if reading is not None:
            labels = ", ".join(f"{k}={v}" for k, v in reading.labels.items())
            yield Step(reading.created_at, "worker-ai", "effect: reading stored",
                       f"{labels} by model {reading.model_version} in {reading.inference_ms:.0f} ms", kind="ok")
