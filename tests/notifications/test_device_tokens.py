"""Registering someone else's FCM token takes nothing from them (issue 18, item 6).

A registration token names one app instance; knowing it proves nothing. Pushes are real: the
real firebase-admin SDK against the local FCM server (tests/notifications/fcm_server.py).
"""

import uuid

import pytest

from notifications.models import DeviceToken
from notifications.services import notification_dispatch
from tests import factories

pytestmark = pytest.mark.django_db

DEVICES = "/api/v1/devices/"


def register(client, token: str):
    return client.post(DEVICES, {"token": token, "platform": "android"}, format="json")


def alert(user, key: str):
    return notification_dispatch(
        kind="equipment_fault", key=key, event_id=uuid.uuid4(), recipient_ids=[user.pk],
        title=f"CRITICAL for {user.username}", body="Drain failure (code E21)", data={"fault_id": 1}, urgent=True,
    )


def test_registering_another_users_active_token_is_409_and_the_victim_keeps_their_alerts(fcm):
    victim, attacker = factories.user(staff=True), factories.user()
    victim_app, attacker_app = factories.api_client_for(victim), factories.api_client_for(attacker)
    assert register(victim_app, "victims-phone").status_code == 201

    response = register(attacker_app, "victims-phone")

    assert response.status_code == 409
    assert response.json()["token"][0].startswith("This registration token is registered to another account")
    device = DeviceToken.objects.get(token="victims-phone")
    assert (device.user, device.is_active) == (victim, True)
    assert attacker_app.delete(DEVICES, {"token": "victims-phone"}, format="json").status_code == 404
    assert DeviceToken.objects.get(token="victims-phone").is_active

    alert(victim, "equipment_fault:1")
    alert(attacker, "equipment_fault:2")

    sends = fcm.sends_to("victims-phone")
    assert [send.message["notification"]["title"] for send in sends] == [f"CRITICAL for {victim.username}"]
    assert len(fcm.sends) == 1, "the attacker has no device, so nothing of theirs went to the victim's phone"


def test_a_token_its_user_signed_out_of_moves_to_the_next_user_of_the_phone(fcm):
    first, second = factories.user(), factories.user()
    first_app, second_app = factories.api_client_for(first), factories.api_client_for(second)
    register(first_app, "shared-phone")
    assert first_app.delete(DEVICES, {"token": "shared-phone"}, format="json").status_code == 204  # sign-out

    response = register(second_app, "shared-phone")

    assert response.status_code == 200 and response.json()["is_active"] is True
    alert(first, "equipment_fault:1")
    alert(second, "equipment_fault:2")
    assert [s.message["notification"]["title"] for s in fcm.sends_to("shared-phone")] == [
        f"CRITICAL for {second.username}"
    ]


def test_a_refused_app_registers_the_new_token_the_sdk_gives_and_fcm_retires_the_old_one(fcm):
    victim, newcomer = factories.user(), factories.user()
    register(factories.api_client_for(victim), "old-token")
    newcomer_app = factories.api_client_for(newcomer)
    assert register(newcomer_app, "old-token").status_code == 409

    # FirebaseMessaging.deleteToken() then getToken(): a new token, which only the app instance gets
    assert register(newcomer_app, "new-token").status_code == 201
    fcm.script("old-token", "unregistered")  # what FCM answers for a deleted token
    alert(victim, "equipment_fault:1")
    alert(newcomer, "equipment_fault:2")

    assert not DeviceToken.objects.get(token="old-token").is_active
    assert [s.message["notification"]["title"] for s in fcm.sends_to("new-token")] == [
        f"CRITICAL for {newcomer.username}"
    ]


def test_a_user_re_registering_their_own_token_still_gets_200():
    user = factories.user()
    app = factories.api_client_for(user)
    register(app, "mine")
    DeviceToken.objects.update(is_active=False)  # e.g. FCM said unregistered, then the app came back

    assert register(app, "mine").status_code == 200
    assert DeviceToken.objects.get().is_active


def test_signing_out_everywhere_stops_pushes_to_every_device_of_the_user(fcm):
    lost_phone_owner, colleague = factories.user(staff=True), factories.user()
    app = factories.api_client_for(lost_phone_owner)
    register(app, "lost-phone")
    register(app, "tablet")
    register(factories.api_client_for(colleague), "colleagues-phone")

    assert app.post("/api/v1/auth/logout-all/").status_code == 204

    assert set(DeviceToken.objects.filter(is_active=True).values_list("token", flat=True)) == {"colleagues-phone"}
    assert DeviceToken.objects.get(token="lost-phone").deactivation_reason == "signed out everywhere"
    alert(lost_phone_owner, "equipment_fault:1")
    alert(colleague, "equipment_fault:2")
    assert [send.token for send in fcm.sends] == ["colleagues-phone"]
