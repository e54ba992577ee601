"""In a real browser, through gunicorn: an operator (superuser) reads the dead letters and the
operations page; an owner may not."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model

from messaging.contracts import BranchPreferenceCreatedEvent, EquipmentFaultEvent, TaskSubmittedEvent
from messaging.dead_letters.archive import dead_letter_archive
from messaging.dead_letters.failures import consumer_failure_record
from messaging.dead_letters.messages import parse_dead_letter
from messaging.events import Envelope
from messaging.models import DeadLetter
from tests import factories
from tests.support import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

DEAD_LETTERS = "/admin/messaging/deadletter/"


def archive_dead_letter(queue: str, event, *, reason: str = "rejected", retries: int = 3, consumer: str = "",
                        error: str = "", minutes_ago: int = 0) -> str:
    """Record a dead letter the way the consumer and the archiver do; returns its event id."""
    envelope = Envelope.wrap(event, correlation_id=f"req-{queue}").as_message_body()
    if error:  # the consumer's own record of why it gave up, written before the message is rejected
        consumer_failure_record(queue=queue, event_id=envelope["event_id"], event_type=envelope["event_type"],
                                consumer=consumer, error=error)
    died = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=minutes_ago)  # AMQP timestamps are naive UTC
    headers = {
        "id": envelope["event_id"], "task": envelope["event_type"], "retries": retries,
        "x-death": [{"count": 1, "reason": reason, "queue": queue, "time": died, "exchange": "fitness.events",
                     "routing-keys": [queue]}],
    }
    body = [[], {"event": envelope}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    dead_letter_archive(parse_dead_letter(queue, headers, body))
    return envelope["event_id"]


@pytest.fixture
def dead_letters():
    now = datetime.now(UTC)
    return [
        archive_dead_letter(
            "task.submitted", TaskSubmittedEvent(task_id=41, branch_id=2, helper_id=7, photo="tasks/2/4f1c.jpg"),
            consumer="ml.read_task_photo", minutes_ago=42,
            error="PermanentError: the photo tasks/2/4f1c.jpg cannot be read (UnidentifiedImageError)",
        ),
        archive_dead_letter(
            "task.submitted", TaskSubmittedEvent(task_id=57, branch_id=3, helper_id=9, photo="tasks/3/9b20.jpg"),
            reason="delivery_limit", minutes_ago=18,
        ),
        archive_dead_letter(
            "equipment.fault",
            EquipmentFaultEvent(fault_id=12, equipment_id=4, branch_id=2, code="E21", severity="critical",
                                message="Washer 2: door lock failure", detected_at=now - timedelta(minutes=7)),
            consumer="notifications.send_fault_alert", minutes_ago=7,
            error="PushUnavailable: FCM answered 503 Service Unavailable (after 3 retries)",
        ),
        archive_dead_letter(
            "preference.created", BranchPreferenceCreatedEvent(branch_id=2, offer_id=5),
            consumer="notifications.send_recommendations", minutes_ago=2,
            error="OperationalError: could not connect to server: Connection refused",
        ),
    ]


def test_an_operator_lists_and_searches_the_dead_letters_and_an_owner_cannot_open_them(page, dead_letters):
    operator = get_user_model().objects.create_superuser("operator", password="operator-pass")
    owner = factories.user("owner-east", staff=True)
    factories.branch("east", owner=owner)

    page.login(operator)
    page.open(DEAD_LETTERS)
    page.assert_styled()
    rows = page.find_all("#result_list tbody tr")
    assert len(rows) == len(dead_letters) == DeadLetter.objects.count()
    listed = page.find("#result_list").text
    for event_id in dead_letters:
        assert event_id in listed
    assert "door lock" not in listed  # the payload is on the detail page, the error in the list
    assert "FCM answered 503" in listed and "delivery_limit" in listed
    page.report_screenshot("operator-dead-letters", full_page=True)

    search = page.find("#searchbar")
    search.send_keys(dead_letters[2])
    page.click_and_wait(page.find('#changelist-search [type="submit"]'))
    rows = page.find_all("#result_list tbody tr")
    assert len(rows) == 1 and "EquipmentFaultEvent" in rows[0].text

    page.open("/admin/operations/")  # the overview: each queue with its .dlq and the recorded dead letters
    page.assert_styled()
    row = page.find("#queues tbody tr")
    assert row.text.startswith("task.submitted") and row.find_elements("css selector", "td")[-1].text == "2"
    assert "unpublished message" in page.find("#outbox").text
    if os.environ.get("WRITE_SCREENSHOTS"):  # the report shows the management API's figures, once it has them
        def management_figures() -> bool:
            page.open("/admin/operations/")
            return "?" not in page.find("#queues tbody").text

        wait_for(management_figures, timeout=30, interval=1, what="the management API's queue figures")
    page.report_screenshot("operator-operations", full_page=True)

    page.login(owner)
    assert page.fetch_status(DEAD_LETTERS) == 403
    assert page.fetch_status("/admin/operations/") == 403
    page.assert_nothing_from_another_host()
