"""The notification consumers: fault alerts (`equipment.fault`, the `worker-alerts` pool),
recommendations (`preference.created`) and the helper's "your photo was read" push
(`task.analyzed.push`, a subscriber of TaskAnalyzedEvent beside the audit trail), both in the
`worker-notify` pool.

Pushes leave the system, so no database rollback can take them back: both consumers are
`atomic=False`. Each batch of push records is committed as it goes, before the event is
recorded as processed, so a retry after a partial send pushes only what is still pending,
and a redelivery after everything went out is skipped by the base consumer.

Documented in docs/architecture.md (*Consumers*) and docs/api.md (*Notifications and push*, *Recommendations*).
"""

from __future__ import annotations

import logging
import time

from celery.signals import celeryd_after_setup, worker_process_init

from branches.selectors import customer_ids_matching_offer, offer_get
from messaging.consumers import event_consumer
from messaging.contracts import BranchPreferenceCreatedEvent, EquipmentFaultEvent, TaskAnalyzedEvent
from messaging.errors import PermanentError, TransientError
from monitoring.selectors import fault_alert_target
from notifications.backends import push_backend
from notifications.models import Notification
from notifications.services import DispatchReport, notification_dispatch, push_abandon
from observability import metrics

logger = logging.getLogger(__name__)

PUSH_QUEUES = {"equipment.fault", "preference.created", "task.analyzed.push"}


def fault_key(event: EquipmentFaultEvent) -> str:
    return f"equipment_fault:{event.fault_id}"


def offer_key(event: BranchPreferenceCreatedEvent) -> str:
    return f"recommendation:{event.offer_id}"


def _retry_if_pending(report: DispatchReport, what: str) -> None:
    if report.to_retry:
        why = report.last_error or "being sent by another worker"
        raise TransientError(f"{report.to_retry} push(es) of {what} not delivered yet ({why}); retrying")


def _abandon_fault_alert(event: EquipmentFaultEvent, envelope, exc: BaseException) -> None:
    push_abandon(key=fault_key(event), reason=f"retries exhausted: {exc}")


@event_consumer(
    EquipmentFaultEvent,
    name="notifications.send_fault_alert",
    queue="equipment.fault",
    on_dead_letter=_abandon_fault_alert,
    atomic=False,
    soft_time_limit=20,
    time_limit=30,
)
def send_fault_alert(event: EquipmentFaultEvent, envelope) -> None:
    """Push the fault to every active device of the branch's owner."""
    target = fault_alert_target(equipment_id=event.equipment_id)
    if target is None:
        raise PermanentError(f"equipment {event.equipment_id} of fault {event.fault_id} does not exist")
    detected = event.detected_at.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    report = notification_dispatch(
        kind=Notification.Kind.EQUIPMENT_FAULT,
        key=fault_key(event),
        event_id=envelope.event_id,
        recipient_ids=[target.owner_id],
        title=f"{event.severity.upper()}: {target.equipment_name} at {target.branch_name}",
        body=f"{event.message} (code {event.code}, detected {detected})",
        data={
            "fault_id": event.fault_id, "equipment_id": event.equipment_id, "equipment": target.equipment_name,
            "equipment_kind": target.equipment_kind, "branch_id": event.branch_id, "code": event.code,
            "severity": event.severity, "detected_at": event.detected_at.isoformat(),
        },
        urgent=event.severity == "critical",
    )
    delivered = report.sent if push_backend().delivers_to_devices else report.notifications  # inbox: stored
    metrics.alert_delivered(occurred_at=envelope.occurred_at, severity=event.severity, delivered=delivered)
    _retry_if_pending(report, f"fault {event.fault_id}")


def _abandon_recommendations(event: BranchPreferenceCreatedEvent, envelope, exc: BaseException) -> None:
    push_abandon(key=offer_key(event), reason=f"retries exhausted: {exc}")


@event_consumer(
    BranchPreferenceCreatedEvent,
    name="notifications.send_recommendations",
    queue="preference.created",
    on_dead_letter=_abandon_recommendations,
    atomic=False,
)
def send_recommendations(event: BranchPreferenceCreatedEvent, envelope) -> None:
    """Recommend the offer to every matching customer, once each."""
    offer = offer_get(offer_id=event.offer_id)
    if offer is None:
        raise PermanentError(f"offer {event.offer_id} of branch {event.branch_id} does not exist")
    report = notification_dispatch(
        kind=Notification.Kind.RECOMMENDATION,
        key=offer_key(event),
        event_id=envelope.event_id,
        # one query; its rows are read in batches, never all customers into memory
        recipient_ids=customer_ids_matching_offer(offer=offer).iterator(chunk_size=2000),
        title=f"{offer.branch.name}: {offer.title}",
        body=offer.body or f"{offer.branch.name} matches what you are looking for.",
        data={"branch_id": offer.branch_id, "offer_id": offer.pk},
    )
    logger.info("offer %s recommended to %s customer(s): %s pushed", offer.pk, report.notifications, report.sent)
    _retry_if_pending(report, f"offer {event.offer_id}")


def analyzed_key(event: TaskAnalyzedEvent) -> str:
    return f"task_analyzed:{event.task_id}"


def _abandon_analyzed_push(event: TaskAnalyzedEvent, envelope, exc: BaseException) -> None:
    push_abandon(key=analyzed_key(event), reason=f"retries exhausted: {exc}")


@event_consumer(
    TaskAnalyzedEvent,
    name="notifications.send_task_analyzed",
    queue="task.analyzed.push",
    on_dead_letter=_abandon_analyzed_push,
    atomic=False,
    soft_time_limit=20,
    time_limit=30,
)
def send_task_analyzed(event: TaskAnalyzedEvent, envelope) -> None:
    """Tell the helper who took the photo what the AI read ("your photo of task 12 was read: shirt, stained")."""
    read = ", ".join(event.labels[head] for head in ("garment", "condition") if head in event.labels) or \
        ", ".join(event.labels.values())
    report = notification_dispatch(
        kind=Notification.Kind.TASK_ANALYZED,
        key=analyzed_key(event),
        event_id=envelope.event_id,
        recipient_ids=[event.helper_id],
        title=f"Task {event.task_id} read",
        body=f"Your photo of task {event.task_id} was read: {read}",
        data={"task_id": event.task_id, "branch_id": event.branch_id, "labels": event.labels,
              "model_version": event.model_version},
    )
    _retry_if_pending(report, f"task {event.task_id}'s reading")


_consumes_push_queues = False


@celeryd_after_setup.connect
def _note_queues(sender, instance, **_: object) -> None:
    # Runs in the worker's main process before the pool forks: only the pools that push
    # (worker-alerts, worker-notify) warm the push backend, not the AI or MLOps pools.
    global _consumes_push_queues
    _consumes_push_queues = bool(PUSH_QUEUES & set(instance.app.amqp.queues.consume_from or {}))


@worker_process_init.connect
def _warm_up_push_backend(**_: object) -> None:
    if not _consumes_push_queues:
        return
    started = time.monotonic()
    try:
        backend = push_backend()
        backend.warm_up()  # import firebase-admin, load the credential, fetch the OAuth token
        Notification.objects.exists()  # connect to PostgreSQL now, not on the first alert
    except Exception as exc:
        logger.warning("push backend not warmed up (the first push will try again): %s", exc)
        return
    logger.info("push backend %s ready in %.0f ms", backend.name, (time.monotonic() - started) * 1000)
