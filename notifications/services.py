"""Notifications: device registration, and dispatching notifications as pushes.

A dispatch is safe to run again (a retry, a redelivered or replayed event): notifications
are unique per recipient and key, pushes per notification and device, and only pending
pushes are sent, each claimed with SKIP LOCKED. So no device gets the same notification
twice, even when a retry follows a partial send. A dispatch first re-arms the pushes of its
key that an earlier handling abandoned (`push_abandon`: its retries ran out while FCM was
down), so a replayed event delivers them; a push FCM accepted is never sent again.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from notifications.backends import Outcome, Push, PushBackend, push_backend
from notifications.models import DeviceToken, Notification, PushDelivery

logger = logging.getLogger(__name__)


def device_register(*, user: AbstractBaseUser, token: str, platform: str) -> tuple[DeviceToken, bool]:
    """Register (or re-register) a device token for `user`; True when it is new.

    A token registered before by someone else moves to `user`: the phone changed hands
    (or accounts), and only its current user may get its pushes.
    """
    device, created = DeviceToken.objects.update_or_create(
        token=token,
        defaults={"user": user, "platform": platform, "is_active": True, "deactivated_at": None,
                  "deactivation_reason": ""},
    )
    return device, created


def device_unregister(*, user: AbstractBaseUser, token: str) -> bool:
    """Stop pushes to one of the user's devices (logout); False when it is not theirs."""
    return bool(
        DeviceToken.objects.filter(user=user, token=token).update(
            is_active=False, deactivated_at=timezone.now(), deactivation_reason="unregistered by the app"
        )
    )


@dataclass
class DispatchReport:
    notifications: int = 0  # recipients handled (new or earlier)
    sent: int = 0
    unregistered: int = 0
    rejected: int = 0
    to_retry: int = 0
    last_error: str = ""


def notification_dispatch(
    *,
    kind: str,
    key: str,
    event_id: uuid.UUID,
    recipient_ids: Iterable[int],
    title: str,
    body: str,
    data: dict,
    urgent: bool = False,
    backend: PushBackend | None = None,
) -> DispatchReport:
    """Notify every recipient once about `key`, and push it to each of their active devices.

    Works in batches of PUSH_BATCH_SIZE recipients and pushes, each committed on its own
    (so it must not run inside a transaction). Pushes that failed transiently stay pending
    and are counted in `to_retry`: dispatching again sends those, and only those.
    """
    backend = backend or push_backend()
    report = DispatchReport()
    for batch in _batches(recipient_ids):
        with transaction.atomic():  # one commit per batch of recipients
            _create_notifications(kind=kind, key=key, event_id=event_id, recipient_ids=batch, title=title, body=body,
                                  data=data, backend=backend)
        report.notifications += len(batch)
    if backend.delivers_to_devices:
        _rearm_abandoned(key=key)
        _send_pending(key=key, urgent=urgent, backend=backend, report=report)
    return report


def _batches(ids: Iterable[int]) -> Iterator[list[int]]:
    iterator = iter(ids)
    while batch := list(itertools.islice(iterator, settings.PUSH_BATCH_SIZE)):
        yield batch


def _create_notifications(*, kind, key, event_id, recipient_ids, title, body, data, backend) -> None:
    """The notifications of a batch of recipients and a pending push per active device.

    Recipients that have a notification about `key` already keep it (a retry, a redelivery).
    """
    devices: dict[int, list[int]] = {}
    if backend.delivers_to_devices:
        for device, user in DeviceToken.objects.filter(user_id__in=recipient_ids, is_active=True).values_list(
            "id", "user_id"
        ):
            devices.setdefault(user, []).append(device)
    Notification.objects.bulk_create(
        [
            Notification(
                recipient_id=recipient, kind=kind, key=key, event_id=event_id, title=title, body=body, data=data,
                status=Notification.Status.PENDING if recipient in devices else Notification.Status.STORED,
            )
            for recipient in recipient_ids
        ],
        ignore_conflicts=True,
    )
    if devices:
        notification_of = dict(
            Notification.objects.filter(key=key, recipient_id__in=list(devices)).values_list("recipient_id", "id")
        )
        PushDelivery.objects.bulk_create(
            [PushDelivery(notification_id=notification_of[user], device_id=device)
             for user, user_devices in devices.items() for device in user_devices],
            ignore_conflicts=True,
        )


def _send_pending(*, key: str, urgent: bool, backend: PushBackend, report: DispatchReport) -> None:
    """Send every pending push of `key` once in this round, a batch per transaction."""
    round_started = timezone.now()
    while True:
        with transaction.atomic():
            batch = list(
                PushDelivery.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("device", "notification")
                .filter(notification__key=key, status=PushDelivery.Status.PENDING)
                .filter(Q(last_attempt_at__isnull=True) | Q(last_attempt_at__lt=round_started))
                .order_by("id")[: settings.PUSH_BATCH_SIZE]
            )
            if not batch:
                return
            results = backend.send([_push(delivery, urgent) for delivery in batch])
            _record(batch, results, report)
        if len(batch) < settings.PUSH_BATCH_SIZE:
            return


def _push(delivery: PushDelivery, urgent: bool) -> Push:
    notification = delivery.notification
    data = {name: str(value) for name, value in notification.data.items()}
    data.update(notification_id=str(notification.pk), kind=notification.kind)
    return Push(delivery.device.token, notification.title, notification.body, data, urgent)


def _record(batch: list[PushDelivery], results, report: DispatchReport) -> None:
    now = timezone.now()
    unregistered = []
    rows: list[tuple[int, str, str, str]] = []  # id, status, provider message id, error
    for delivery, result in zip(batch, results, strict=True):
        status = _STATUS_OF[result.outcome]
        rows.append((delivery.pk, status, result.message_id, result.error))
        if result.outcome is Outcome.SENT:
            report.sent += 1
        elif result.outcome is Outcome.UNREGISTERED:
            unregistered.append(delivery.device_id)
            report.unregistered += 1
        elif result.outcome is Outcome.REJECTED:
            report.rejected += 1
            logger.warning("push %s to device %s rejected, dropped: %s", delivery.notification_id,
                           delivery.device_id, result.error)
        else:
            report.to_retry += 1
            report.last_error = result.error
    # Plain SQL: this runs for every alert, and the ORM's bulk_update (a CASE per column)
    # cost more CPU to build than the statement costs PostgreSQL.
    ids, statuses, message_ids, errors = (list(column) for column in zip(*rows, strict=True))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {PushDelivery._meta.db_table} AS d SET status = v.status, attempts = d.attempts + 1,"
            " provider_message_id = v.message_id, error = v.error, last_attempt_at = %s,"
            " sent_at = CASE WHEN v.status = %s THEN %s ELSE d.sent_at END"
            " FROM unnest(%s::bigint[], %s::varchar[], %s::varchar[], %s::text[]) AS v(id, status, message_id, error)"
            " WHERE d.id = v.id",
            # the application's clock, as `_send_pending` compares it with the round's start
            [now, PushDelivery.Status.SENT.value, now, ids, statuses, message_ids, errors],
        )
    if unregistered:
        DeviceToken.objects.filter(pk__in=unregistered).update(
            is_active=False, deactivated_at=now, deactivation_reason="FCM: UNREGISTERED"
        )
        logger.info("deactivated %s unregistered device token(s)", len(unregistered))
    _refresh_status(notification_ids=sorted({delivery.notification_id for delivery in batch}))


_STATUS_OF = {
    Outcome.SENT: PushDelivery.Status.SENT.value,
    Outcome.UNREGISTERED: PushDelivery.Status.UNREGISTERED.value,
    Outcome.REJECTED: PushDelivery.Status.FAILED.value,
    Outcome.RETRY: PushDelivery.Status.PENDING.value,
}


def push_abandon(*, key: str, reason: str) -> int:
    """Give up on the pending pushes of `key` (retries exhausted); returns how many.

    They become `abandoned`, not `failed`: FCM never refused them, so a replay of the event
    re-arms and sends them (`notification_dispatch`).
    """
    with transaction.atomic():
        pending = PushDelivery.objects.filter(notification__key=key, status=PushDelivery.Status.PENDING)
        ids = list(pending.values_list("notification_id", flat=True).distinct())
        count = pending.update(status=PushDelivery.Status.ABANDONED, error=reason[:2000])
        _refresh_status(notification_ids=ids)
    return count


def _rearm_abandoned(*, key: str) -> int:
    """Make the abandoned pushes of `key` to still-active devices pending again; how many."""
    with transaction.atomic():
        abandoned = PushDelivery.objects.filter(
            notification__key=key, status=PushDelivery.Status.ABANDONED, device__is_active=True
        )
        ids = list(abandoned.values_list("notification_id", flat=True).distinct())
        if not ids:
            return 0
        count = PushDelivery.objects.filter(pk__in=abandoned.values("pk")).update(status=PushDelivery.Status.PENDING)
        _refresh_status(notification_ids=ids)
    logger.info("re-armed %s abandoned push(es) of %s", count, key)
    return count


def _refresh_status(*, notification_ids: list[int]) -> None:
    """Derive each notification's status, attempts, message id and error from its pushes.

    sent: a device accepted it; pending: a push waits; failed: every push failed; stored:
    there was no device to push to. Plain SQL, for the same reason as in `_record`.
    """
    if not notification_ids:
        return
    S = PushDelivery.Status
    with connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE {Notification._meta.db_table} AS n SET
                  status = CASE WHEN agg.sent > 0 THEN %s WHEN agg.pending > 0 THEN %s
                                WHEN agg.total > 0 THEN %s ELSE %s END,
                  attempts = agg.attempts, provider_message_id = agg.message_id, error = agg.error,
                  updated_at = clock_timestamp()
                FROM (
                  SELECT n2.id, count(d.id) AS total,
                         count(d.id) FILTER (WHERE d.status = %s) AS sent,
                         count(d.id) FILTER (WHERE d.status = %s) AS pending,
                         coalesce(max(d.attempts), 0) AS attempts,
                         coalesce((array_agg(d.provider_message_id ORDER BY d.sent_at, d.id)
                                   FILTER (WHERE d.status = %s))[1], '') AS message_id,
                         coalesce((array_agg(d.error ORDER BY d.last_attempt_at DESC NULLS LAST, d.id DESC)
                                   FILTER (WHERE d.error <> ''))[1], '') AS error
                  FROM {Notification._meta.db_table} AS n2
                  LEFT JOIN {PushDelivery._meta.db_table} AS d ON d.notification_id = n2.id
                  WHERE n2.id = ANY(%s) GROUP BY n2.id
                ) AS agg
                WHERE n.id = agg.id""",
            [Notification.Status.SENT.value, Notification.Status.PENDING.value, Notification.Status.FAILED.value,
             Notification.Status.STORED.value, S.SENT.value, S.PENDING.value, S.SENT.value, list(notification_ids)],
        )
