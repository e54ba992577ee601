"""publish_event: the transactional outbox with its after-commit fast path."""

import json

import pytest
from django.db import transaction

from messaging.correlation import correlation_scope
from messaging.models import OutboxMessage
from messaging.outbox import publish_event
from tests.probe.events import ProbeRecordedEvent
from tests.probe.models import ProbeEffect
from tests.support import drain_queue, queue_depth, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

UNCONSUMED_QUEUE = "preference.created"  # no test worker consumes it: messages stay countable


def test_a_rolled_back_transaction_publishes_nothing(route_events):
    route_events("ProbeRecordedEvent", UNCONSUMED_QUEUE)
    drain_queue(UNCONSUMED_QUEUE)

    with pytest.raises(RuntimeError), transaction.atomic():
        publish_event(ProbeRecordedEvent(label="rolled-back"))
        raise RuntimeError("the request failed after publishing")

    assert OutboxMessage.objects.count() == 0
    assert queue_depth(UNCONSUMED_QUEUE) == 0


def test_a_committed_event_is_consumed_by_a_real_worker(probe_worker, route_events):
    with correlation_scope("req-committed"), transaction.atomic():
        message = publish_event(ProbeRecordedEvent(label="committed"))
        # inside the transaction nothing has left for RabbitMQ yet
        assert OutboxMessage.objects.get(pk=message.pk).published_at is None

    effect = wait_for(lambda: ProbeEffect.objects.filter(label="committed").first(), what="the probe effect")
    assert effect.event_id == message.event_id
    assert effect.correlation_id == "req-committed"
    message.refresh_from_db()
    assert message.published_at is not None
    assert message.publish_attempts == 1
    assert message.envelope["correlation_id"] == "req-committed"


def test_the_fast_path_publishes_the_envelope_as_the_message_body(route_events):
    route_events("ProbeRecordedEvent", UNCONSUMED_QUEUE)
    drain_queue(UNCONSUMED_QUEUE)

    message = publish_event(ProbeRecordedEvent(label="body"))

    (delivered,) = drain_queue(UNCONSUMED_QUEUE)
    args, kwargs, _ = json.loads(delivered.body)  # Celery's message protocol 2
    assert kwargs == {"event": message.envelope}
    assert set(message.envelope) == {
        "event_id", "event_type", "schema_version", "occurred_at", "producer", "correlation_id", "payload",
    }
    assert message.envelope["payload"] == {"label": "body"}
    assert delivered.headers["task"] == "ProbeRecordedEvent"
    assert delivered.headers["event_id"] == str(message.event_id)
    assert delivered.properties["delivery_mode"] == 2  # persistent


def test_an_event_nobody_subscribes_to_stays_in_the_outbox_refused_by_rabbitmq():
    # The producer knows no subscriber: it publishes with the event type for routing key, and
    # RabbitMQ's mandatory return says that no queue is bound for it.
    class UnroutedEvent(ProbeRecordedEvent):
        event_type = "UnroutedEvent"

    with transaction.atomic():
        message = publish_event(UnroutedEvent(label="nowhere"))

    row = OutboxMessage.objects.get(pk=message.pk)
    assert (row.queue, row.published_at, row.refusals) == ("UnroutedEvent", None, 1)
    assert "no queue is bound for routing key 'UnroutedEvent'" in row.last_error
