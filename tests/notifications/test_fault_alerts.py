"""Telemetry → fault → push on the owner's phone, with a real broker, a real `equipment.fault`
worker, the real firebase-admin SDK, and the local FCM server."""

import threading
import time

import pytest

from messaging.broker import publish_envelope
from messaging.models import OutboxMessage, ProcessedEvent
from monitoring.models import Fault
from notifications.models import DeviceToken, Notification, PushDelivery
from notifications.services import device_register
from tests import factories
from tests.monitoring.support import TELEMETRY_URL, equipment, machine_client, reading
from tests.notifications.conftest import fcm_worker_env
from tests.support import WorkerProcess, drain_queue, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("relay")]

CONSUMER = "notifications.send_fault_alert"


@pytest.fixture(scope="module")
def alerts_worker(django_db_setup, django_db_blocker, broker_vhost, log_dir, fcm_server, fcm_credentials):
    """The worker-alerts pool (2 processes) with PUSH_BACKEND=fcm pointed at the local server.

    Module-scoped: it consumes only this module's events; anything older in the queue is
    dropped first.
    """
    drain_queue("equipment.fault")
    worker = WorkerProcess(
        ["equipment.fault"], name="alerts", concurrency=2, log_dir=log_dir,
        **fcm_worker_env(fcm_server, fcm_credentials),
    ).start()
    # the first alert should not wait for a pool process still loading firebase-admin
    wait_for(lambda: worker.log().count("push backend fcm ready") == 2, what="the pool to warm up the push backend")
    yield worker
    worker.stop()


@pytest.fixture
def fcm(alerts_worker, fcm_server):
    fcm_server.reset()
    return fcm_server


@pytest.fixture
def washer():
    owner = factories.user(staff=True)
    branch = factories.branch(owner=owner)
    device_register(user=owner, token="owner-phone", platform="android")
    device_register(user=owner, token="owner-tablet", platform="ios")
    machine, _ = equipment(branch=branch, kind="washer", name="washer-1", key="e2e-washer-key")
    return machine


def processed(count: int = 1):
    return wait_for(lambda: ProcessedEvent.objects.filter(consumer=CONSUMER).count() >= count,
                    timeout=30, what=f"{count} fault alert(s) processed")


def test_a_fault_reaches_every_device_of_the_owner_within_a_second(fcm, washer):
    posted = time.time()
    response = machine_client("e2e-washer-key").post(TELEMETRY_URL, reading(error_code="E21"), format="json")
    assert response.status_code == 202

    sends = fcm.wait_for_sends(2, timeout=15)
    latency = max(send.arrived_at for send in sends) - posted

    assert sorted(send.token for send in sends) == ["owner-phone", "owner-tablet"]
    fault = Fault.objects.get()
    message = sends[0].message
    assert message["notification"]["title"] == f"CRITICAL: washer-1 at {washer.branch.name}"
    assert "Drain failure" in message["notification"]["body"] and "E21" in message["notification"]["body"]
    assert message["data"]["fault_id"] == str(fault.pk) and message["data"]["severity"] == "critical"
    assert message["data"]["equipment"] == "washer-1" and message["android"]["priority"] == "high"
    assert latency < 1.0, f"the push arrived {latency:.3f} s after the POST"
    processed()
    notification = Notification.objects.get(recipient=washer.branch.owner)
    assert (notification.kind, notification.status, notification.key) == ("equipment_fault", "sent",
                                                                           f"equipment_fault:{fault.pk}")


def test_a_flood_of_identical_error_readings_raises_one_alert(fcm, washer):
    barrier = threading.Barrier(10)
    statuses = []

    def machine_reports():
        from django.db import connection

        client = machine_client("e2e-washer-key")
        barrier.wait()
        for _ in range(5):
            statuses.append(client.post(TELEMETRY_URL, reading(error_code="E21"), format="json").status_code)
        connection.close()

    threads = [threading.Thread(target=machine_reports) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [202] * 50
    assert Fault.objects.count() == 1 and OutboxMessage.objects.filter(event_type="EquipmentFaultEvent").count() == 1
    fcm.wait_for_sends(2)
    processed()
    time.sleep(1.0)  # anything more would have arrived by now
    assert sorted(send.token for send in fcm.sends) == ["owner-phone", "owner-tablet"]


def test_a_redelivered_fault_event_pushes_nothing_twice(fcm, washer, alerts_worker):
    machine_client("e2e-washer-key").post(TELEMETRY_URL, reading(error_code="E41"), format="json")
    fcm.wait_for_sends(2)
    processed()

    publish_envelope("equipment.fault", OutboxMessage.objects.get().envelope)  # e.g. the relay after a crash

    wait_for(lambda: "skipped: already processed" in alerts_worker.log(), what="the redelivery to be skipped")
    assert len(fcm.sends) == 2


def test_a_quota_error_is_retried_by_the_consumer_and_the_other_device_is_not_pushed_twice(fcm, washer):
    fcm.script("owner-tablet", "quota", "ok")

    machine_client("e2e-washer-key").post(TELEMETRY_URL, reading(vibration_g=4.0), format="json")
    processed()

    tablet = [send for send in fcm.sends if send.token == "owner-tablet"]
    assert [send.status for send in tablet] == [429, 200]
    assert 0.9 <= tablet[1].arrived_at - tablet[0].arrived_at < 5, "retried after the 1 s backoff"
    assert len(fcm.sends_to("owner-phone")) == 1
    assert set(PushDelivery.objects.values_list("status", flat=True)) == {"sent"}
    assert PushDelivery.objects.get(device__token="owner-tablet").attempts == 2


def test_an_unregistered_device_is_deactivated_by_the_worker(fcm, washer):
    fcm.script("owner-tablet", "unregistered")

    machine_client("e2e-washer-key").post(TELEMETRY_URL, reading(temperature_c=99.0), format="json")
    processed()

    assert not DeviceToken.objects.get(token="owner-tablet").is_active
    assert DeviceToken.objects.get(token="owner-phone").is_active
    assert Notification.objects.get().status == "sent"
