"""The fcm backend, through the real firebase-admin SDK against the local FCM and OAuth server."""

import logging
import uuid
import warnings
from contextlib import contextmanager

import psycopg2
import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import connection
from firebase_admin import messaging

from notifications.backends import FcmBackend, Outcome, Push, push_backend
from notifications.models import DeviceToken, Notification, PushDelivery
from notifications.services import PUSH_CLAIM_LOCK, device_register, notification_dispatch, push_abandon
from tests import factories

pytestmark = pytest.mark.django_db


def owner_with_devices(*tokens: str):
    user = factories.user()
    for token in tokens:
        device_register(user=user, token=token, platform="android")
    return user


def dispatch(*recipients, key="equipment_fault:1", urgent=True):
    return notification_dispatch(
        kind="equipment_fault", key=key, event_id=uuid.uuid4(), recipient_ids=[r.pk for r in recipients],
        title="CRITICAL: washer-1 at Gangnam", body="Drain failure (code E21)", data={"fault_id": 1, "code": "E21"},
        urgent=urgent,
    )


def delivery(token: str) -> PushDelivery:
    return PushDelivery.objects.select_related("notification", "device").get(device__token=token)


def test_a_push_reaches_every_active_device_with_title_body_and_data(fcm):
    owner = owner_with_devices("phone-a", "phone-b", "old-phone")
    DeviceToken.objects.filter(token="old-phone").update(is_active=False)

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # our use of the SDK raises no deprecation
        report = dispatch(owner)

    assert (report.sent, report.to_retry) == (2, 0)
    assert sorted(send.token for send in fcm.sends) == ["phone-a", "phone-b"]
    message = fcm.sends_to("phone-a")[0].message
    assert message["notification"] == {"title": "CRITICAL: washer-1 at Gangnam", "body": "Drain failure (code E21)"}
    assert message["data"]["fault_id"] == "1" and message["data"]["kind"] == "equipment_fault"
    assert message["android"]["priority"] == "high"
    notification = Notification.objects.get(recipient=owner)
    # a resent copy (see below) replaces the first on the phone instead of showing twice
    collapse_id = f"notification-{notification.pk}"
    assert message["android"]["collapse_key"] == message["android"]["notification"]["tag"] == collapse_id
    assert message["apns"]["headers"]["apns-collapse-id"] == collapse_id
    assert notification.status == "sent" and notification.attempts == 1
    assert notification.provider_message_id.startswith("projects/fitness-test/messages/")
    assert delivery("phone-a").status == "sent" and delivery("phone-a").provider_message_id
    assert fcm.token_requests >= 1, "the SDK authenticated with the service account's signed JWT"


def test_an_unregistered_token_is_deactivated(fcm):
    owner = owner_with_devices("stale-phone", "phone")
    fcm.script("stale-phone", "unregistered")

    report = dispatch(owner)

    assert (report.sent, report.unregistered, report.to_retry) == (1, 1, 0)
    device = DeviceToken.objects.get(token="stale-phone")
    assert not device.is_active and device.deactivation_reason == "FCM: UNREGISTERED" and device.deactivated_at
    assert delivery("stale-phone").status == "unregistered"
    assert Notification.objects.get().status == "sent"  # the other phone has it
    dispatch(owner, key="equipment_fault:2")
    assert len(fcm.sends_to("stale-phone")) == 1, "a deactivated device gets nothing more"


def test_an_invalid_argument_is_logged_and_dropped_without_retrying(fcm, caplog):
    owner = owner_with_devices("garbled")
    fcm.script("garbled", "invalid")

    with caplog.at_level(logging.WARNING, logger="notifications.services"):
        report = dispatch(owner)

    assert (report.rejected, report.to_retry) == (1, 0)
    failed = delivery("garbled")
    assert failed.status == "failed" and "INVALID_ARGUMENT" in failed.error
    assert Notification.objects.get().status == "failed"
    assert "rejected, dropped" in caplog.text
    assert DeviceToken.objects.get(token="garbled").is_active, "the payload may be at fault, not the device"
    dispatch(owner)
    assert len(fcm.sends_to("garbled")) == 1


def test_a_503_succeeds_on_retry(fcm):
    owner = owner_with_devices("phone")
    fcm.script("phone", "unavailable", "ok")

    report = dispatch(owner)

    assert (report.sent, report.to_retry) == (1, 0)
    assert [send.status for send in fcm.sends_to("phone")] == [503, 200]
    assert delivery("phone").status == "sent"


def test_quota_errors_are_retried_later_and_a_retry_resends_only_what_failed(fcm):
    owner = owner_with_devices("busy-phone", "phone")
    fcm.script("busy-phone", "quota", "ok")

    first = dispatch(owner)  # the consumer raises TransientError on this: Celery retries after 1 s, 2 s, 4 s

    assert (first.sent, first.to_retry) == (1, 1) and "QuotaExceededError" in first.last_error
    pending = delivery("busy-phone")
    assert pending.status == "pending" and pending.attempts == 1 and "Quota" in pending.error

    second = dispatch(owner)  # the retry

    assert (second.sent, second.to_retry) == (1, 0)
    assert len(fcm.sends_to("phone")) == 1, "the device that had it is not pushed again"
    assert [send.status for send in fcm.sends_to("busy-phone")] == [429, 200]
    assert delivery("busy-phone").attempts == 2 and Notification.objects.get().status == "sent"


def test_pushes_left_pending_when_retries_run_out_are_marked_abandoned(fcm):
    owner = owner_with_devices("busy-phone")
    fcm.script("busy-phone", "quota")
    dispatch(owner)

    assert push_abandon(key="equipment_fault:1", reason="retries exhausted: quota") == 1

    assert delivery("busy-phone").status == "abandoned"
    assert Notification.objects.get().status == "failed"


def test_dispatching_again_sends_what_was_abandoned_once_and_nothing_already_sent(fcm):
    owner = owner_with_devices("busy-phone", "phone", "lost-phone")
    fcm.script("busy-phone", "quota", "quota", "ok")
    fcm.script("lost-phone", "quota")
    dispatch(owner)
    push_abandon(key="equipment_fault:1", reason="retries exhausted: quota")
    DeviceToken.objects.filter(token="lost-phone").update(is_active=False)  # logged out meanwhile

    replayed = dispatch(owner)  # the replayed event: FCM still refuses busy-phone once
    again = dispatch(owner)  # its retry

    assert (replayed.sent, replayed.to_retry, again.sent, again.to_retry) == (0, 1, 1, 0)
    assert [send.status for send in fcm.sends_to("busy-phone")] == [429, 429, 200]
    assert len(fcm.sends_to("phone")) == 1, "the device that had it is not pushed again"
    assert len(fcm.sends_to("lost-phone")) == 1 and delivery("lost-phone").status == "abandoned"
    assert delivery("busy-phone").status == "sent" and Notification.objects.get().status == "sent"
    dispatch(owner)
    assert len(fcm.sends) == 5


def test_a_notification_to_someone_without_devices_is_stored(fcm):
    dispatch(factories.user())

    assert Notification.objects.get().status == "stored" and fcm.sends == []


def test_send_each_gets_at_most_500_messages_per_call(fcm, monkeypatch):
    backend = push_backend()
    assert isinstance(backend, FcmBackend)
    batch_sizes = []
    real_send_each = messaging.send_each

    def counting_send_each(messages_, *args, **kwargs):
        batch_sizes.append(len(messages_))
        return real_send_each(messages_, *args, **kwargs)

    monkeypatch.setattr(messaging, "send_each", counting_send_each)

    results = backend.send([Push(f"device-{i}", "t", "b") for i in range(501)])

    assert batch_sizes == [500, 1]
    assert len(results) == 501 and {r.outcome for r in results} == {Outcome.SENT}
    assert len(fcm.sends) == 501


def test_pushes_are_dispatched_in_batches(fcm, settings):
    settings.PUSH_BATCH_SIZE = 2
    users = [owner_with_devices(f"phone-{i}") for i in range(5)]

    report = dispatch(*users, urgent=False)

    assert report.sent == 5 and len(fcm.sends) == 5
    assert fcm.sends[0].message["android"]["priority"] == "normal"


# --- sending: committed before the call, sent again when its sender died ------------------


@contextmanager
def claim_held_elsewhere(claim: int):
    """A live sender in another process: a session of its own holding the claim's lock."""
    db = connection.settings_dict
    other = psycopg2.connect(dbname=db["NAME"], user=db["USER"], password=db["PASSWORD"], host=db["HOST"],
                             port=db["PORT"])
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", [PUSH_CLAIM_LOCK, claim])
        yield
    finally:
        other.close()


def left_sending(token: str, claim: int) -> None:
    PushDelivery.objects.filter(device__token=token).update(status="sending", claim=claim)


def test_a_push_whose_sender_died_during_the_call_is_sent_again_once(fcm):
    owner = owner_with_devices("phone", "tablet")
    dispatch(owner)
    left_sending("phone", claim=4242)  # as a sender killed after FCM accepted leaves it: its lock died with it

    report = dispatch(owner)  # the redelivered event

    assert (report.sent, report.to_retry) == (1, 0)
    assert len(fcm.sends_to("phone")) == 2 and len(fcm.sends_to("tablet")) == 1
    assert delivery("phone").status == "sent" and delivery("phone").attempts == 2
    dispatch(owner)
    assert len(fcm.sends) == 3, "sent is sent: never again"


def test_a_push_a_live_sender_is_sending_is_left_to_it_and_counted_as_not_yet_delivered(fcm):
    owner = owner_with_devices("phone")
    dispatch(owner)
    left_sending("phone", claim=4343)

    with claim_held_elsewhere(4343):
        report = dispatch(owner)  # a duplicate delivery of the event, while the first is in its call
        assert push_abandon(key="equipment_fault:1", reason="retries exhausted") == 0

    assert (report.sent, report.to_retry) == (0, 1)
    assert len(fcm.sends_to("phone")) == 1 and delivery("phone").status == "sending"
    assert push_abandon(key="equipment_fault:1", reason="retries exhausted") == 1, "its sender is gone now"
    assert delivery("phone").status == "abandoned"


def test_a_call_interrupted_by_a_time_limit_leaves_the_push_sending_and_the_retry_sends_it(fcm, monkeypatch):
    owner = owner_with_devices("phone")
    backend = push_backend()

    def interrupted(pushes):
        raise SoftTimeLimitExceeded()  # Celery's soft time limit, raised inside the call to FCM

    monkeypatch.setattr(backend, "send", interrupted)
    with pytest.raises(SoftTimeLimitExceeded):
        dispatch(owner)
    assert delivery("phone").status == "sending" and delivery("phone").attempts == 1
    monkeypatch.undo()

    report = dispatch(owner)  # Celery's retry

    assert (report.sent, report.to_retry) == (1, 0) and delivery("phone").attempts == 2
