"""Pushes that survive what goes wrong: an FCM outage, a dead-lettered and replayed event, a
worker killed after FCM accepted. Real workers, the real firebase-admin SDK against the local
FCM server, the real broker, and `manage.py dlq replay` as an operator runs it."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from contextlib import contextmanager

import pytest

from branches.models import CustomerPreference
from branches.services import branch_offer_publish
from messaging.models import DeadLetter, OutboxMessage, ProcessedEvent
from notifications.models import PushDelivery
from notifications.services import device_register
from tests import factories
from tests.monitoring.support import TELEMETRY_URL, equipment, machine_client, reading
from tests.notifications.conftest import fcm_worker_env
from tests.support import ROOT, WorkerProcess, dead_letter_archiver, drain_queue, subprocess_env, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("relay")]

ALERTS = "notifications.send_fault_alert"
RECOMMENDATIONS = "notifications.send_recommendations"
DEVICES = ["owner-phone", "owner-tablet"]


@contextmanager
def push_worker(queue: str, name: str, log_dir, fcm_server, fcm_credentials, *, drain: bool = True, **env: str):
    """The pool that consumes `queue` (as the Procfile runs it), pushing to the local FCM server;
    with `drain`, what waits in the queue is dropped first."""
    if drain:
        drain_queue(queue)
    # the shared broker is slow to open a connection at times (vhosts come and go): a retry's
    # publish must not fail on that (Celery rejects a message whose retry it cannot publish)
    env = {"CELERY_BROKER_CONNECTION_TIMEOUT": "30", **env}
    worker = WorkerProcess([queue], name=name, concurrency=1, log_dir=log_dir,
                           **fcm_worker_env(fcm_server, fcm_credentials), **env)
    try:
        worker.start()
        wait_for(lambda: "push backend fcm ready" in worker.log(), what="the pool to warm up the push backend")
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def fcm(fcm_server):
    fcm_server.reset()
    yield fcm_server
    fcm_server.reset()  # lets go of a held answer


@pytest.fixture
def archiver(log_dir):
    """`dlq replay` chooses the dead letters in the history that the archiver writes."""
    archiver = dead_letter_archiver(log_dir, name="archiver-push-recovery").start()
    yield archiver
    archiver.stop()


@pytest.fixture
def washer():
    owner = factories.user(staff=True)
    branch = factories.branch(owner=owner)
    for token in DEVICES:
        device_register(user=owner, token=token, platform="android")
    _, key = equipment(branch=branch, kind="washer", name="washer-1", key=f"recovery-{uuid.uuid4().hex[:8]}")
    return key


def report_fault(key: str) -> str:
    """A drain-failure reading from the machine with API key `key`; returns its fault event's id."""
    response = machine_client(key).post(TELEMETRY_URL, reading(error_code="E21"), format="json")
    assert response.status_code == 202, response.content
    return str(OutboxMessage.objects.get(event_type="EquipmentFaultEvent").envelope["event_id"])


def processed(consumer: str, timeout: float = 60):
    return wait_for(lambda: ProcessedEvent.objects.filter(consumer=consumer).exists(), timeout=timeout,
                    what=f"{consumer} to record the event as processed")


def dead_lettered(event_id: str, timeout: float = 120) -> None:
    """The consumer gave up: its failure is on record and no push of the event waits any more."""
    wait_for(lambda: DeadLetter.objects.filter(event_id=event_id, failed_at__isnull=False).exists()
             and not PushDelivery.objects.filter(status="pending").exists(),
             timeout=timeout, what=f"event {event_id} to be dead-lettered")


def dlq_replay(event_id: str) -> str:
    """`manage.py dlq replay --event-id`, retried until the dead letter is in its `.dlq`."""
    def replay():
        result = subprocess.run(
            [sys.executable, "manage.py", "dlq", "replay", "--event-id", event_id, "--by", "test"],
            cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120,
        )
        return result.stdout if result.returncode == 0 and "replayed 1 dead letter(s)" in result.stdout else None

    return wait_for(replay, timeout=60, interval=0.5, what=f"`dlq replay --event-id {event_id}` to replay it")


def delivered(fcm, tokens=DEVICES) -> dict[str, int]:
    return {token: len(fcm.delivered_to(token)) for token in tokens}


# --- defect: a replayed event re-arms what was abandoned ------------------------------------


def test_a_fault_alert_dead_lettered_while_fcm_was_down_reaches_each_device_once_when_replayed(
    fcm, washer, archiver, log_dir, fcm_server, fcm_credentials
):
    for token in DEVICES:
        fcm.script(token, "unavailable")
    # a retry schedule of 3 s, so that this alert is dead-lettered quickly
    with push_worker("equipment.fault", "alerts-replay", log_dir, fcm_server, fcm_credentials,
                     FAULT_ALERT_RETRY_SECONDS="3"):
        event_id = report_fault(washer)
        dead_lettered(event_id)
        assert delivered(fcm) == {"owner-phone": 0, "owner-tablet": 0}

        for token in DEVICES:
            fcm.script(token, "ok")  # FCM is back
        dlq_replay(event_id)
        processed(ALERTS)
        time.sleep(1.0)  # a second push would have arrived by now

    assert delivered(fcm) == {"owner-phone": 1, "owner-tablet": 1}
    assert set(PushDelivery.objects.values_list("status", flat=True)) == {"sent"}


def test_recommendations_dead_lettered_while_fcm_was_down_reach_each_device_once_when_replayed(
    fcm, archiver, log_dir, fcm_server, fcm_credentials
):
    customers = [factories.user(f"customer-{i}-{uuid.uuid4().hex[:6]}") for i in range(2)]
    for user in customers:
        CustomerPreference.objects.create(customer=user)
        device_register(user=user, token=f"phone-of-{user.username}", platform="android")
    tokens = [f"phone-of-{user.username}" for user in customers]
    for token in tokens:
        fcm.script(token, "unavailable")
    with push_worker("preference.created", "notify-replay", log_dir, fcm_server, fcm_credentials):
        offer = branch_offer_publish(branch=factories.branch(), title="Dry cleaning week")
        event_id = str(OutboxMessage.objects.get(event_type="BranchPreferenceCreatedEvent").envelope["event_id"])
        dead_lettered(event_id, timeout=180)  # 1 s, 2 s, 4 s, and each attempt with the SDK's own retries
        assert delivered(fcm, tokens) == dict.fromkeys(tokens, 0)

        for token in tokens:
            fcm.script(token, "ok")
        dlq_replay(event_id)
        processed(RECOMMENDATIONS)
        time.sleep(1.0)

    assert delivered(fcm, tokens) == dict.fromkeys(tokens, 1)
    assert set(PushDelivery.objects.filter(notification__key=f"recommendation:{offer.pk}")
               .values_list("status", flat=True)) == {"sent"}


# --- a fault alert outlives an FCM outage ---------------------------------------------------


def test_a_fault_alert_survives_a_minute_of_fcm_outage_and_arrives_once_when_fcm_recovers(
    fcm, washer, log_dir, fcm_server, fcm_credentials
):
    with push_worker("equipment.fault", "alerts-outage", log_dir, fcm_server, fcm_credentials):
        recovered_at = fcm.outage(60)
        event_id = report_fault(washer)
        processed(ALERTS, timeout=200)
        time.sleep(1.0)

    assert delivered(fcm) == {"owner-phone": 1, "owner-tablet": 1}
    refused = [send for send in fcm.sends if send.status == 503]
    accepted = [send for send in fcm.sends if send.status == 200]
    assert refused and max(send.arrived_at for send in refused) < recovered_at <= accepted[0].arrived_at
    assert not DeadLetter.objects.filter(event_id=event_id).exists(), "it was never dead-lettered"
    print(f"\nFCM down for 60 s ({len(refused)} requests refused): the alert arrived "
          f"{max(send.arrived_at for send in accepted) - recovered_at:.1f} s after FCM recovered")


# --- a worker killed after FCM accepted: at least once, at most one extra push ---------------


def test_a_worker_killed_after_fcm_accepted_costs_each_device_at_most_one_extra_push(
    fcm, washer, log_dir, fcm_server, fcm_credentials
):
    for token in DEVICES:
        fcm.script(token, "hold", "ok")  # FCM accepts the first push, and its answer never arrives
    with push_worker("equipment.fault", "alerts-killed", log_dir, fcm_server, fcm_credentials) as worker:
        event_id = report_fault(washer)
        fcm.wait_for_sends(2, timeout=60)
        # the sender committed the pushes as being sent before it called FCM
        assert sorted(PushDelivery.objects.values_list("status", flat=True)) == ["sending", "sending"]
        worker.kill()  # kill -9 of the worker and its pool, FCM's answers still held
        fcm.release()
    with push_worker("equipment.fault", "alerts-restarted", log_dir, fcm_server, fcm_credentials, drain=False):
        processed(ALERTS)  # RabbitMQ redelivered the unacknowledged event to the new worker
        time.sleep(1.0)

    pushes = delivered(fcm)
    print(f"\nkill -9 after FCM accepted: pushes per device {pushes}")
    assert all(1 <= count <= 2 for count in pushes.values()), pushes
    assert set(PushDelivery.objects.values_list("status", flat=True)) == {"sent"}
    assert ProcessedEvent.objects.filter(consumer=ALERTS, event_id=event_id).count() == 1
