"""Notifications: device registration, and dispatching notifications as pushes.

A dispatch is safe to run again (a retry, a redelivered or replayed event): notifications
are unique per recipient and key, pushes per notification and device, and only pending
pushes are sent, each claimed with SKIP LOCKED. So no device gets the same notification
twice, even when a retry follows a partial send. A dispatch first re-arms the pushes of its
key that an earlier handling abandoned (`push_abandon`: its retries ran out while FCM was
down), so a replayed event delivers them; a push FCM accepted is never sent again.

Pushes go out at least once, with at most one extra push per device per crash. FCM's HTTP v1
API has no idempotency key, so a request whose answer never arrived (the worker was killed,
hit its time limit, or lost PostgreSQL before it recorded the answer) may or may not have
reached the phone. A sender therefore commits its batch as `sending` before it calls FCM,
holding a PostgreSQL advisory lock (the batch's `claim`) on its own database session, and
records the answers afterwards. A push still `sending` whose lock is free has lost its
sender: the next handling of the event (the redelivery RabbitMQ makes when the worker dies,
the retry after a time limit, a replay) sends it again, rather than risk an alert never
ringing. A push whose sender is alive is left to it, and counted as not yet delivered, so
the event is retried rather than recorded as done too early.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from notifications.backends import Outcome, Push, PushBackend, push_backend
from notifications.models import DeviceToken, Notification, PushDelivery

logger = logging.getLogger(__name__)

# The class (first key) of the advisory locks that push claims hold: "push" in ASCII.
PUSH_CLAIM_LOCK = 0x70757368


class DeviceTokenInUse(Exception):
    """The registration token is an active device of another user; it stays theirs."""


def device_register(*, user: AbstractBaseUser, token: str, platform: str) -> tuple[DeviceToken, bool]:
    """Register (or re-register) a device token for `user`; True when it is new.

    An FCM registration token names one app instance, and the SDK hands it only to that
    instance, but the token itself proves nothing: anyone who learns it could send it here.
    So a token that is an active device of another user is not moved (DeviceTokenInUse):
    moving it would take their alerts away and show the caller's pushes on their phone. It
    becomes free when its user's app signs out and unregisters it (`device_unregister`), or
    when FCM reports it unregistered; then whoever registers it next gets it. An app that
    is refused does what FCM advises on a change of user: it deletes its token with the SDK
    (`deleteToken`), which only that app instance can do, and registers the new one; FCM then
    answers UNREGISTERED for the old one and the worker deactivates it.
    """
    with transaction.atomic():
        device = DeviceToken.objects.select_for_update().filter(token=token).first()
        if device is None:
            try:
                with transaction.atomic():
                    return DeviceToken.objects.create(user=user, token=token, platform=platform), True
            except IntegrityError:  # a concurrent registration of the same token committed first
                device = DeviceToken.objects.select_for_update().get(token=token)
        if device.is_active and device.user_id != user.pk:
            raise DeviceTokenInUse("This registration token is registered to another account's device.")
        device.user, device.platform, device.is_active = user, platform, True
        device.deactivated_at, device.deactivation_reason = None, ""
        device.save(update_fields=["user", "platform", "is_active", "deactivated_at", "deactivation_reason",
                                   "updated_at"])
    return device, False


def device_unregister(*, user: AbstractBaseUser, token: str) -> bool:
    """Stop pushes to one of the user's devices (logout); False when it is not theirs."""
    return bool(
        DeviceToken.objects.filter(user=user, token=token).update(
            is_active=False, deactivated_at=timezone.now(), deactivation_reason="unregistered by the app"
        )
    )


def device_unregister_all(*, user: AbstractBaseUser, reason: str) -> int:
    """Stop pushes to every device of the user (they signed out everywhere); how many were active."""
    return DeviceToken.objects.filter(user=user, is_active=True).update(
        is_active=False, deactivated_at=timezone.now(), deactivation_reason=reason[:200]
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
    and are counted in `to_retry` (with those another live sender is sending right now):
    dispatching again sends those, and only those.
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
        report.to_retry = PushDelivery.objects.filter(
            notification__key=key, status__in=[PushDelivery.Status.PENDING, PushDelivery.Status.SENDING]
        ).count()
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
    """Send every pending push of `key` once in this round, and every one a dead sender left
    `sending`: a batch is claimed (committed), sent, then recorded (committed)."""
    round_started = timezone.now()
    while True:
        claim, batch = _claim_batch(key=key, round_started=round_started)
        if not batch:
            return
        try:
            results = backend.send([_push(delivery, urgent) for delivery in batch])
            with transaction.atomic():
                _record(batch, results, report)
        finally:
            _release_claim(claim)
        if len(batch) < settings.PUSH_BATCH_SIZE:
            return


def _claim_batch(*, key: str, round_started) -> tuple[int, list[PushDelivery]]:
    """Mark up to PUSH_BATCH_SIZE pushes of `key` as `sending` under a new claim, and commit.

    The claim's advisory lock is taken on this session before the commit and held until
    `_release_claim`; PostgreSQL drops it with the session if the process dies. A push is
    taken when it is pending and not yet tried in this round, or `sending` under a claim
    whose lock nobody holds (its sender died).
    """
    with connection.cursor() as cursor:
        claim = _new_claim(cursor)
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                now = timezone.now()  # the application's clock, as the round's start is
                cursor.execute(
                    f"""WITH picked AS (
                          SELECT p.id, p.status FROM {PushDelivery._meta.db_table} AS p
                          JOIN {Notification._meta.db_table} AS n ON n.id = p.notification_id
                          WHERE n.key = %s AND (p.last_attempt_at IS NULL OR p.last_attempt_at < %s)
                            AND (p.status = %s OR (p.status = %s AND pg_try_advisory_xact_lock(%s, p.claim)))
                          ORDER BY p.id LIMIT %s FOR UPDATE OF p SKIP LOCKED)
                        UPDATE {PushDelivery._meta.db_table} AS d
                        SET status = %s, claim = %s, attempts = d.attempts + 1, last_attempt_at = %s
                        FROM picked WHERE d.id = picked.id
                        RETURNING d.id, picked.status""",
                    [key, round_started, PushDelivery.Status.PENDING.value, PushDelivery.Status.SENDING.value,
                     PUSH_CLAIM_LOCK, settings.PUSH_BATCH_SIZE, PushDelivery.Status.SENDING.value, claim, now],
                )
                picked = cursor.fetchall()
            batch = list(PushDelivery.objects.select_related("device", "notification")
                         .filter(pk__in=[row[0] for row in picked]).order_by("id")) if picked else []
    except BaseException:
        _release_claim(claim)
        raise
    resent = sum(1 for _, status in picked if status == PushDelivery.Status.SENDING)
    if resent:
        logger.warning("sending %s push(es) of %s again: their sender died during its request to FCM, "
                       "which may have delivered them", resent, key)
    if not batch:
        _release_claim(claim)
    return claim, batch


def _new_claim(cursor) -> int:
    while True:  # a random claim id that no live sender holds (a clash is a one in 2^31 event)
        claim = secrets.randbelow(2**31 - 1) + 1
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [PUSH_CLAIM_LOCK, claim])
        if cursor.fetchone()[0]:
            return claim


def _release_claim(claim: int) -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [PUSH_CLAIM_LOCK, claim])
    except DatabaseError:  # the session is gone, and its locks with it
        logger.warning("could not release push claim %s (its database session is gone)", claim)


def _push(delivery: PushDelivery, urgent: bool) -> Push:
    notification = delivery.notification
    data = {name: str(value) for name, value in notification.data.items()}
    data.update(notification_id=str(notification.pk), kind=notification.kind)
    return Push(delivery.device.token, notification.title, notification.body, data, urgent,
                collapse_id=f"notification-{notification.pk}")


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
            f"UPDATE {PushDelivery._meta.db_table} AS d SET status = v.status, claim = NULL,"
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
    A push left `sending` by a sender that died is abandoned too (it may have reached the
    phone: a replay sends it again, at most once more); one a live sender holds is its own.
    """
    S = PushDelivery.Status
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                f"""UPDATE {PushDelivery._meta.db_table} AS d SET status = %s, claim = NULL, error = %s
                    FROM {Notification._meta.db_table} AS n
                    WHERE n.id = d.notification_id AND n.key = %s
                      AND (d.status = %s OR (d.status = %s AND pg_try_advisory_xact_lock(%s, d.claim)))
                    RETURNING d.notification_id""",
                [S.ABANDONED.value, reason[:2000], key, S.PENDING.value, S.SENDING.value, PUSH_CLAIM_LOCK],
            )
            ids = [row[0] for row in cursor.fetchall()]
        _refresh_status(notification_ids=sorted(set(ids)))
    return len(ids)


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

    sent: a device accepted it; pending: a push waits or is being sent; failed: every push
    failed or was abandoned; stored:
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
                         count(d.id) FILTER (WHERE d.status IN (%s, %s)) AS pending,
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
             Notification.Status.STORED.value, S.SENT.value, S.PENDING.value, S.SENDING.value, S.SENT.value,
             list(notification_ids)],
        )
