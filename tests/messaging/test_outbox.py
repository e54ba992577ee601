"""publish_event: the transactional outbox. The request commits the row; the relay publishes it."""

import json
import time

import pytest
from django.db import connection, transaction

from messaging.correlation import correlation_scope
from messaging.models import OutboxMessage
from messaging.outbox import OUTBOX_CHANNEL, publish_event, publish_pending
from tests.probe.events import ProbeRecordedEvent
from tests.probe.models import ProbeEffect
from tests.support import drain_queue, queue_depth, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

UNCONSUMED_QUEUE = "preference.created"  # no test worker consumes it: messages stay countable
CLOSED_PORT_URL = "amqp://guest:guest@127.0.0.1:1//"


def test_a_rolled_back_transaction_publishes_nothing(relay, route_events):
    route_events("ProbeRecordedEvent", UNCONSUMED_QUEUE)
    drain_queue(UNCONSUMED_QUEUE)

    with pytest.raises(RuntimeError), transaction.atomic():
        publish_event(ProbeRecordedEvent(label="rolled-back"))
        raise RuntimeError("the request failed after publishing")
    publish_event(ProbeRecordedEvent(label="committed after it"))  # the relay's next wake sees only this one

    wait_for(lambda: queue_depth(UNCONSUMED_QUEUE) == 1, timeout=20, what="the later event in the queue")
    assert [row.envelope["payload"]["label"] for row in OutboxMessage.objects.all()] == ["committed after it"]
    assert queue_depth(UNCONSUMED_QUEUE) == 1
    drain_queue(UNCONSUMED_QUEUE)


def test_a_committed_event_is_consumed_by_a_real_worker(probe_worker, relay, route_events):
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


def test_the_relay_publishes_the_envelope_as_the_message_body(relay, route_events):
    route_events("ProbeRecordedEvent", UNCONSUMED_QUEUE)
    drain_queue(UNCONSUMED_QUEUE)

    message = publish_event(ProbeRecordedEvent(label="body"))

    wait_for(lambda: queue_depth(UNCONSUMED_QUEUE) == 1, timeout=20, what="the event in the queue")
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


def test_publish_event_writes_the_row_and_never_touches_the_broker(broker_url, route_events):
    broker_url(CLOSED_PORT_URL)  # were it to connect, it would fail (or wait)

    with transaction.atomic():
        message = publish_event(ProbeRecordedEvent(label="no broker"))

    row = OutboxMessage.objects.get()
    assert row.pk == message.pk and row.event_id == message.event_id
    assert (row.published_at, row.publish_attempts, row.last_error, row.last_attempt_at) == (None, 0, "", None)
    assert row.envelope == message.envelope and row.queue == "task.submitted"
    assert row.created_at == message.created_at


def test_the_commit_notifies_the_relays_once_and_a_rollback_not_at_all(route_events):
    import psycopg2

    listener = psycopg2.connect(**connection.get_connection_params())
    listener.autocommit = True
    try:
        listener.cursor().execute(f"LISTEN {OUTBOX_CHANNEL}")
        with pytest.raises(RuntimeError), transaction.atomic():
            publish_event(ProbeRecordedEvent(label="rolled back"))
            raise RuntimeError
        with transaction.atomic():
            publish_event(ProbeRecordedEvent(label="one"))
            publish_event(ProbeRecordedEvent(label="two"))
            time.sleep(0.2)
            listener.poll()
            assert listener.notifies == []  # not before the commit
        wait_for(lambda: listener.poll() or listener.notifies, timeout=5, what="the notification")
        time.sleep(0.2)
        listener.poll()
        assert [n.channel for n in listener.notifies] == [OUTBOX_CHANNEL]
    finally:
        listener.close()


def test_the_notification_goes_after_the_commit_in_a_transaction_of_its_own():
    # A NOTIFY in the writing transaction takes PostgreSQL's cluster-wide notification lock at
    # its commit and holds it through the WAL flush, so concurrent publishing commits queue
    # one behind another (benchmarks/api_submit.py's p99). The row commits alone; the relays
    # are told afterwards, once per transaction, in a statement that does not wait for the disk.
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured, transaction.atomic():
        publish_event(ProbeRecordedEvent(label="one"))
        publish_event(ProbeRecordedEvent(label="two"))
    statements = [query["sql"] for query in captured.captured_queries]
    commit = statements.index("COMMIT")
    assert sum("INSERT INTO messaging_outboxmessage" in sql for sql in statements[:commit]) == 2
    assert not any("pg_notify" in sql for sql in statements[:commit])
    after_commit = statements[commit + 1:]
    assert len(after_commit) == 1 and "pg_notify" in after_commit[0], statements
    assert "synchronous_commit" in after_commit[0]


def test_an_event_nobody_subscribes_to_stays_in_the_outbox_refused_by_rabbitmq():
    # The producer knows no subscriber: the relay publishes with the event type for routing
    # key, and RabbitMQ's mandatory return says that no queue is bound for it.
    class UnroutedEvent(ProbeRecordedEvent):
        event_type = "UnroutedEvent"

    with transaction.atomic():
        message = publish_event(UnroutedEvent(label="nowhere"))
    publish_pending(ids=[message.pk])

    row = OutboxMessage.objects.get(pk=message.pk)
    assert (row.queue, row.published_at, row.refusals) == ("UnroutedEvent", None, 1)
    assert "no queue is bound for routing key 'UnroutedEvent'" in row.last_error


def test_staged_events_that_no_closing_statement_wrote_are_written_when_the_block_ends():
    from messaging.outbox import staged_publishes

    with transaction.atomic(), staged_publishes():
        message = publish_event(ProbeRecordedEvent(label="staged"))
        assert message.pk is None and not OutboxMessage.objects.exists()  # held back for one statement
    assert OutboxMessage.objects.get().pk == message.pk


def _event_for_rows(rows_sql: str, rows_params: list):
    """A TaskSubmittedEvent's outbox row as a CTE of a statement whose `made` CTE gives the ids."""
    from messaging.contracts import TaskSubmittedEvent
    from messaging.outbox import event_row_cte

    event = event_row_cte(
        TaskSubmittedEvent, {"branch_id": 3, "helper_id": 4, "photo": "tasks/p.jpg"},
        name="event", rows_of="made", ids={"task_id": "id"},
    )
    with connection.cursor() as cursor:
        cursor.execute(f"WITH made AS ({rows_sql}), {event.sql} SELECT (SELECT id FROM event)",
                       [*rows_params, *event.params])
        (row_id,) = cursor.fetchone()
    event.written(row_id, task_id=42)
    return event.message


def test_an_event_row_in_the_callers_statement_carries_the_id_that_statement_made():
    message = _event_for_rows("SELECT 42 AS id WHERE %s", [True])

    row = OutboxMessage.objects.get()
    assert message.pk == row.pk
    assert row.envelope["payload"] == message.envelope["payload"] == {
        "task_id": 42, "branch_id": 3, "helper_id": 4, "photo": "tasks/p.jpg"}
    assert (row.event_type, row.queue, row.published_at) == ("TaskSubmittedEvent", "TaskSubmittedEvent", None)


def test_an_event_row_of_a_statement_that_made_nothing_is_not_written():
    message = _event_for_rows("SELECT 42 AS id WHERE %s", [False])

    assert message.pk is None and not OutboxMessage.objects.exists()


def test_an_event_row_for_a_field_the_event_does_not_have_is_refused_before_any_sql():
    from messaging.contracts import TaskSubmittedEvent
    from messaging.outbox import event_row_cte

    with pytest.raises(ValueError, match="TaskSubmittedEvent has no field task_number"):
        event_row_cte(TaskSubmittedEvent, {"branch_id": 3, "helper_id": 4, "photo": "p.jpg"},
                      name="event", rows_of="made", ids={"task_number": "id"})
