"""The base consumer's idempotency record, in process: written at the end with the activity row,
looked up first only for a copy that may have been processed before (redelivered, a retry)."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

import tests.probe.consumers  # noqa: F401 - registers the probe subscribers
from messaging.consumers import Delivery, subscriptions
from messaging.events import Envelope
from messaging.models import EventActivity, OutboxMessage, ProcessedEvent
from tests.probe.events import ProbeForwardedEvent, ProbeRecordedEvent
from tests.probe.models import ProbeEffect

pytestmark = pytest.mark.django_db


def deliver(body: dict, **delivery) -> tuple[str, list[str]]:
    (subscription,) = subscriptions(body["event_type"])
    with CaptureQueriesContext(connection) as captured:
        outcome = subscription.run(body, _delivery=Delivery(queue="task.submitted", **delivery))
    statements = []
    for query in captured.captured_queries:
        sql = query["sql"]
        if sql.startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")):
            continue
        table = re.search(r'\b(?:FROM|INTO)\s+"?(\w+)', sql)
        statements.append(f"{sql.split()[0]} {table.group(1)}")
    return outcome, statements


def body(label: str) -> dict:
    return Envelope.wrap(ProbeRecordedEvent(label=label), correlation_id="req-1").as_message_body()


def kinds(event_id) -> list[str]:
    return list(EventActivity.objects.filter(event_id=event_id).order_by("id").values_list("kind", flat=True))


def test_a_first_delivery_writes_its_effect_then_both_records_in_one_statement():
    event = body("first")

    outcome, statements = deliver(event)

    assert outcome == "processed"
    assert statements == ["INSERT probe_probeeffect", "WITH messaging_processedevent"]
    assert ProcessedEvent.objects.filter(event_id=event["event_id"]).count() == 1
    assert kinds(event["event_id"]) == ["processed"]


def test_a_second_copy_that_is_not_marked_redelivered_rolls_its_effect_back_and_is_skipped():
    event = body("published twice")
    deliver(event)

    outcome, _ = deliver(event)

    assert outcome == "duplicate"
    assert ProbeEffect.objects.filter(label="published twice").count() == 1, "the second effect was rolled back"
    assert ProcessedEvent.objects.filter(event_id=event["event_id"]).count() == 1
    assert kinds(event["event_id"]) == ["processed", "skipped"]


@pytest.mark.parametrize("delivery", [{"redelivered": True}, {"redelivered": True, "attempt": 2}],
                         ids=["redelivered", "a-retry"])
def test_a_redelivered_copy_of_a_processed_event_is_skipped_before_its_handler_runs(delivery):
    event = body("redelivered")
    deliver(event)

    outcome, statements = deliver(event, **delivery)

    assert outcome == "duplicate"
    assert statements == ["SELECT messaging_processedevent", "INSERT messaging_eventactivity"], "no handler"
    assert ProbeEffect.objects.filter(label="redelivered").count() == 1


def forwarding(labels: list[str], **fields) -> dict:
    return Envelope.wrap(ProbeForwardedEvent(labels=labels, **fields), correlation_id="req-2").as_message_body()


def published_labels() -> list[str]:
    return sorted(row.envelope["payload"]["label"] for row in OutboxMessage.objects.all())


def test_the_events_a_handler_publishes_go_into_its_closing_statement():
    # one round trip for the records and the outbox rows, as the AI's reading and its TaskAnalyzedEvent
    event = forwarding(["a", "b"])

    outcome, statements = deliver(event)

    assert outcome == "processed"
    assert statements == ["WITH messaging_processedevent"], "the outbox rows came with the records"
    assert published_labels() == ["a", "b"]
    rows = OutboxMessage.objects.all()
    assert {row.envelope["correlation_id"] for row in rows} == {"req-2"}, "the event's correlation id flows on"
    assert {row.queue for row in rows} == {"ProbeRecordedEvent"}


def test_a_duplicate_copy_publishes_nothing_again():
    event = forwarding(["once"])
    deliver(event)

    outcome, _ = deliver(event)

    assert outcome == "duplicate"
    assert published_labels() == ["once"]


def test_a_publish_in_a_rolled_back_savepoint_of_the_handler_is_taken_back():
    outcome, _ = deliver(forwarding(["kept"], in_savepoint=["taken back"], roll_back=True))

    assert outcome == "processed"
    assert published_labels() == ["kept"]


def test_a_publish_in_a_kept_savepoint_is_written_at_once_and_kept():
    outcome, _ = deliver(forwarding([], in_savepoint=["in a savepoint"]))

    assert outcome == "processed"
    assert published_labels() == ["in a savepoint"]
