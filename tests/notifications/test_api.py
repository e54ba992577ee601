"""POST/DELETE /api/v1/devices/ and GET /api/v1/notifications/, and the notification log in the admin."""

import uuid

import pytest
from django.test import Client
from rest_framework.test import APIClient

from notifications.models import DeviceToken, Notification
from tests import factories

pytestmark = pytest.mark.django_db

DEVICES = "/api/v1/devices/"
NOTIFICATIONS = "/api/v1/notifications/"


def notify(user, title: str, key: str | None = None) -> Notification:
    return Notification.objects.create(
        recipient=user, kind="equipment_fault", key=key or f"k-{uuid.uuid4()}", event_id=uuid.uuid4(), title=title,
        body="body", data={"fault_id": 1}, status="stored",
    )


def test_an_app_registers_its_device_and_registering_again_is_fine():
    user = factories.user()
    client = factories.api_client_for(user)

    created = client.post(DEVICES, {"token": "fcm-token-1", "platform": "ios"}, format="json")
    again = client.post(DEVICES, {"token": "fcm-token-1", "platform": "ios"}, format="json")

    assert created.status_code == 201 and again.status_code == 200
    assert created.json()["token"] == "fcm-token-1" and created.json()["is_active"] is True
    device = DeviceToken.objects.get()
    assert (device.user, device.platform, device.is_active) == (user, "ios", True)


def test_a_token_registered_by_another_user_moves_to_the_new_one_and_is_reactivated():
    first, second = factories.user(), factories.user()
    factories.api_client_for(first).post(DEVICES, {"token": "shared", "platform": "android"}, format="json")
    DeviceToken.objects.update(is_active=False)

    response = factories.api_client_for(second).post(DEVICES, {"token": "shared", "platform": "android"}, format="json")

    assert response.status_code == 200
    device = DeviceToken.objects.get()
    assert device.user == second and device.is_active


@pytest.mark.parametrize(
    "body, field",
    [({"platform": "android"}, "token"), ({"token": "t", "platform": "nokia"}, "platform"),
     ({"token": "", "platform": "android"}, "token"), ({"token": "x" * 1025, "platform": "web"}, "token")],
    ids=["no-token", "bad-platform", "blank-token", "too-long"],
)
def test_a_bad_registration_is_400(body, field):
    response = factories.api_client_for(factories.user()).post(DEVICES, body, format="json")

    assert response.status_code == 400 and field in response.json()
    assert not DeviceToken.objects.exists()


def test_unregistering_stops_pushes_to_the_device_and_only_its_owner_can():
    user, other = factories.user(), factories.user()
    client = factories.api_client_for(user)
    client.post(DEVICES, {"token": "mine", "platform": "android"}, format="json")

    assert factories.api_client_for(other).delete(DEVICES, {"token": "mine"}, format="json").status_code == 404
    assert DeviceToken.objects.get().is_active
    assert client.delete(DEVICES, {"token": "mine"}, format="json").status_code == 204
    assert not DeviceToken.objects.get().is_active
    assert client.delete(DEVICES, {"token": "unknown"}, format="json").status_code == 404
    assert client.delete(DEVICES, {}, format="json").status_code == 400


def test_anonymous_requests_are_401():
    assert APIClient().post(DEVICES, {"token": "t", "platform": "web"}, format="json").status_code == 401
    assert APIClient().get(NOTIFICATIONS).status_code == 401


def test_a_user_reads_their_own_notifications_newest_first():
    user, other = factories.user(), factories.user()
    notify(user, "older")
    newer = notify(user, "newer")
    notify(other, "not yours")

    body = factories.api_client_for(user).get(NOTIFICATIONS).json()

    assert body["count"] == 2
    assert [n["title"] for n in body["results"]] == ["newer", "older"]
    assert body["results"][0] == {
        "id": newer.pk, "kind": "equipment_fault", "title": "newer", "body": "body", "data": {"fault_id": 1},
        "status": "stored", "created_at": newer.created_at.isoformat().replace("+00:00", "Z"),
    }


def test_one_notification_per_recipient_and_key():
    from django.db import IntegrityError, transaction

    user = factories.user()
    notify(user, "first", key="recommendation:1")
    with pytest.raises(IntegrityError), transaction.atomic():
        notify(user, "again", key="recommendation:1")


def test_owners_see_their_own_notification_log_in_the_admin():
    owner = factories.user(staff=True)
    factories.branch(owner=owner)
    notify(owner, "Your washer is broken")
    notify(factories.user(), "Someone else's alert")
    client = Client()
    client.force_login(owner)

    page = client.get("/admin/notifications/notification/")

    assert page.status_code == 200
    assert b"Your washer is broken" in page.content and b"Someone else" not in page.content
    mine = Notification.objects.get(recipient=owner)
    assert client.get(f"/admin/notifications/notification/{mine.pk}/change/").status_code == 200
    theirs = Notification.objects.exclude(recipient=owner).get()
    assert client.get(f"/admin/notifications/notification/{theirs.pk}/change/").status_code in {302, 403, 404}
