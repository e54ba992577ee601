"""Dead letters end to end: a real worker, the archiver, and `manage.py dlq` on a vhost of their own."""

import io
import json
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.management import CommandError, call_command

from fitness.celery import app as celery_app
from messaging.dead_letters import operations
from messaging.errors import BrokerUnavailable
from messaging.models import DeadLetter, ProcessedEvent
from messaging.outbox import publish_event
from tests.observability.scrape import scrape
from tests.probe.events import ProbeFixableEvent, ProbeRecordedEvent
from tests.probe.models import ProbeEffect
from tests.support import (
    WorkerProcess,
    broker_connection,
    dead_letter_archiver,
    drain_queue,
    own_vhost,
    queue_depth,
    wait_for,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("relay")]  # on this module's vhost

DLQ = "task.submitted.dlq"


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker, broker_vhost, log_dir):
    """A vhost for this module only (its DLQ counts are exact), a worker and the archiver."""
    with own_vhost("dlq") as url:
        worker = WorkerProcess(["task.submitted"], name="dlq", concurrency=2, log_dir=log_dir).start()
        archiver = dead_letter_archiver(log_dir, name="archiver-dlq").start()
        yield SimpleNamespace(url=url, worker=worker, archiver=archiver)
        archiver.stop()
        worker.stop()


@pytest.fixture
def fixable(stack, route_events, tmp_path: Path):
    """Publish ProbeFixableEvents whose handler is broken until `fix()` is called."""
    route_events("ProbeFixableEvent", "task.submitted")
    flag = tmp_path / "fixed"

    def publish(*labels: str):
        return [publish_event(ProbeFixableEvent(label=label, fixed_when=str(flag))) for label in labels]

    return SimpleNamespace(publish=publish, fix=flag.touch)


def dlq(*args: str) -> str:
    out = io.StringIO()
    call_command("dlq", *args, stdout=out)
    return out.getvalue()


def archived(events, *, deaths: int = 1) -> list[DeadLetter]:
    """Wait until the archiver has recorded `deaths` deaths of each event."""
    ids = [str(e.event_id) for e in events]

    def look():
        rows = list(DeadLetter.objects.filter(event_id__in=ids, deaths__gte=deaths))
        return rows if len(rows) == len(ids) else None

    rows = wait_for(look, timeout=30, what=f"{len(ids)} dead letters archived with {deaths} death(s)")
    return sorted(rows, key=lambda row: ids.index(row.event_id))


def test_replaying_a_fixed_handlers_dead_letters_processes_each_once_and_empties_the_dlq(stack, fixable):
    events = fixable.publish("fix-a", "fix-b", "fix-c")

    rows = archived(events)
    wait_for(lambda: queue_depth(DLQ) == 3, what="three dead letters in the DLQ")
    for event, row in zip(events, rows, strict=True):
        assert (row.queue, row.event_type, row.reason, row.attempts, row.status) == (
            "task.submitted", "ProbeFixableEvent", "rejected", 1, "dead-lettered")
        assert row.consumer == "tests.fixable_probe"
        assert "PermanentError: probe" in row.error and "hits a bug" in row.error
        assert row.envelope == event.envelope
    # the consumer's own dead-letter hook ran in the worker (the archiver leaves it to it)
    assert ProbeEffect.objects.filter(label__startswith="dead-lettered:fix-").count() == 3

    listing = dlq("list")
    assert any(line.split()[:2] == [DLQ, "3"] for line in listing.splitlines()), listing
    shown = dlq("show", "--queue", "task.submitted")
    for event in events:
        assert str(event.event_id) in shown
    assert "hits a bug" in shown and "rejected" in shown

    fixable.fix()
    replayed_before = scrape().value("fitness_events_published_total", 0, event_type="ProbeFixableEvent", via="replay")
    replay = dlq("replay", "--event-type", "ProbeFixableEvent", "--by", "ops")

    assert "replayed 3 dead letter(s)" in replay
    assert scrape().value("fitness_events_published_total", event_type="ProbeFixableEvent", via="replay") == (
        replayed_before + 3)
    wait_for(lambda: ProbeEffect.objects.filter(label__in=["fix-a", "fix-b", "fix-c"]).count() == 3,
             what="the replayed events to be processed")
    assert queue_depth(DLQ) == 0
    assert "no dead letters match" in dlq("replay", "--all")
    for row in DeadLetter.objects.filter(event_id__in=[str(e.event_id) for e in events]):
        assert (row.status, row.replays, row.replayed_by) == ("replayed", 1, "ops")
    for event in events:
        assert ProcessedEvent.objects.filter(event_id=event.event_id).count() == 1
    assert ProbeEffect.objects.filter(label__in=["fix-a", "fix-b", "fix-c"]).count() == 3


def test_a_replay_of_a_still_broken_handler_dies_again_and_the_history_counts_both(stack, fixable, admin_client):
    first, second = fixable.publish("broken-1", "broken-2")
    archived([first, second])

    planned = dlq("replay", "--event-id", str(first.event_id), "--dry-run")
    assert "would replay 1 dead letter(s) (dry run: nothing changed)" in planned
    assert DeadLetter.objects.get(event_id=first.event_id).replays == 0

    assert "replayed 1 dead letter(s)" in dlq("replay", "--event-id", str(first.event_id), "--by", "alice")
    (row,) = archived([first], deaths=2)
    assert (row.status, row.replays, row.replayed_by) == ("dead-lettered", 1, "alice")

    # the admin's action runs the same replay
    other = DeadLetter.objects.get(event_id=second.event_id)
    response = admin_client.post(
        "/admin/messaging/deadletter/", {"action": "replay_selected", "_selected_action": [other.pk]}, follow=True
    )
    assert "Replayed 1 dead letter(s)" in response.content.decode()
    (other,) = archived([second], deaths=2)
    assert other.replayed_by == "admin (admin)" and other.status == "dead-lettered"
    wait_for(lambda: queue_depth(DLQ) >= 2, what="both back in the DLQ")

    detail = dlq("show", "--event-id", str(first.event_id))
    assert "\"label\": \"broken-1\"" in detail and "deaths (history)   2" in detail


def test_purge_removes_what_it_showed_and_keeps_the_history(stack, fixable):
    drain_queue(DLQ)  # what earlier tests left (their history went with their transactions)
    events = fixable.publish("purge-1", "purge-2")
    archived(events)
    wait_for(lambda: queue_depth(DLQ) >= 2, what="the dead letters")

    assert "no dead letters match" in dlq("purge", "--event-type", "ProbeFixableEvent", "--older-than", "1h")
    with pytest.raises(CommandError, match="not confirmed.*--yes"):
        dlq("purge", "--queue", "task.submitted")
    planned = dlq("purge", "--queue", "task.submitted", "--dry-run")
    assert "would purge" in planned and queue_depth(DLQ) >= 2

    purged = dlq("purge", "--queue", "task.submitted", "--yes", "--by", "bob")

    assert "purged" in purged
    assert queue_depth(DLQ) == 0
    for row in DeadLetter.objects.filter(event_id__in=[str(e.event_id) for e in events]):
        assert (row.status, row.purged_by) == ("purged", "bob")


def test_a_replay_interrupted_by_a_broker_failure_loses_nothing_and_can_be_run_again(stack, fixable, monkeypatch):
    events = fixable.publish("midway-1", "midway-2", "midway-3")
    archived(events)
    wait_for(lambda: queue_depth(DLQ) == 3, what="three dead letters in the DLQ")
    fixable.fix()
    publish = operations.publish_envelope
    published = []

    def broker_fails_on_the_second(queue, body, **options):
        if len(published) == 1:
            raise BrokerUnavailable("RabbitMQ went away")
        publish(queue, body, **options)
        published.append(body["event_id"])

    monkeypatch.setattr(operations, "publish_envelope", broker_fails_on_the_second)
    with pytest.raises(CommandError, match="stopped early, the rest stays in the dead-letter queue: RabbitMQ went"):
        dlq("replay", "--event-type", "ProbeFixableEvent")

    wait_for(lambda: ProbeEffect.objects.filter(label__startswith="midway-").count() == 1, what="the one replayed")
    # the message in hand when the publish failed went back to the DLQ, with the one not reached
    wait_for(lambda: queue_depth(DLQ) == 2, timeout=10, what="the two not replayed to be in the DLQ")
    monkeypatch.setattr(operations, "publish_envelope", publish)
    assert "replayed 2 dead letter(s)" in dlq("replay", "--event-type", "ProbeFixableEvent")
    wait_for(lambda: ProbeEffect.objects.filter(label__startswith="midway-").count() == 3, what="the rest")
    assert queue_depth(DLQ) == 0
    for event in events:
        assert ProbeEffect.objects.filter(event_id=event.event_id, label__startswith="midway-").count() == 1


def delivery_count_in_dlq(event_id: str) -> int | None:
    """The x-delivery-count of the event's message in the DLQ (None: not there); all left in place."""
    with broker_connection() as connection:
        channel = connection.channel()
        try:
            while (message := channel.basic_get(DLQ, no_ack=False)) is not None:
                if message.headers.get("id") == event_id:
                    return int(message.headers.get("x-delivery-count") or 0)
            return None
        finally:
            channel.close()  # returns every message taken: this look is the only delivery


def test_browsing_the_dead_letters_25_times_delivers_none_of_them(stack, fixable):
    (event,) = fixable.publish("browsed")
    archived([event])
    wait_for(lambda: queue_depth(DLQ) >= 1, what="the dead letter")

    waiting = str(queue_depth(DLQ))
    for _ in range(25):
        assert any(line.split()[:2] == [DLQ, waiting] for line in dlq("list").splitlines())
        assert str(event.event_id) in dlq("show", "--queue", "task.submitted")
        assert '"label": "browsed"' in dlq("show", "--event-id", str(event.event_id))

    # RabbitMQ 4 drops a message whose delivery count passes its limit (20 by default)
    assert delivery_count_in_dlq(str(event.event_id)) == 0
    # and a replay or purge takes only the messages in front of the one it wants
    assert "purged 1 dead letter(s)" in dlq("purge", "--event-id", str(event.event_id), "--yes")
    assert delivery_count_in_dlq(str(event.event_id)) is None


# --- messages that are not event envelopes ----------------------------------------------------
NOT_JSON = b"\xffnot json at all\x00, published by hand"
PLAIN_JSON = b'{"order": 17, "note": "no Celery headers"}'


def publish_raw(body: bytes, *, content_type: str | None = None, headers: dict | None = None) -> None:
    """Publish as a person or a foreign system would: no Celery envelope, just bytes."""
    with broker_connection() as connection:
        channel = connection.default_channel
        message = channel.prepare_message(body, content_type=content_type, headers=headers or {},
                                          properties={"delivery_mode": 2})
        channel.basic_publish(message, exchange="fitness.events", routing_key="task.submitted")


def celery_message(task: str, raw: bytes | None = None) -> tuple[bytes, str]:
    """A Celery message for `task`: well formed, or with the body `raw`."""
    task_id = str(uuid.uuid4())
    headers, properties, body, _ = celery_app.amqp.as_task_v2(task_id, task, kwargs={"x": 1})
    raw = raw if raw is not None else json.dumps(body).encode()
    with broker_connection() as connection:
        channel = connection.default_channel
        message = channel.prepare_message(raw, content_type="application/json", content_encoding="utf-8",
                                          headers=headers, properties={"delivery_mode": 2})
        channel.basic_publish(message, exchange="fitness.events", routing_key="task.submitted")
    return raw, task_id


def test_bodies_that_are_not_envelopes_land_in_the_dlq_intact_are_archived_and_listed(stack, route_events):
    """Published by hand (the management UI's "Publish message") or by a foreign system."""
    drain_queue(DLQ)  # what earlier tests left: its count is exact from here on
    publish_raw(NOT_JSON)
    publish_raw(PLAIN_JSON, content_type="application/json")
    publish_raw(b"plain text, a header but no task", content_type="text/plain", headers={"source": "ops"})
    unknown_body, unknown_id = celery_message("NoSuchTask")  # a task no worker has
    garbled_body, garbled_id = celery_message("ProbeRecordedEvent", b"[garbled")  # a known task, a broken body
    flowing = [publish_event(ProbeRecordedEvent(label=f"raw-flow-{i}")) for i in range(3)]

    rows = wait_for(lambda: (r := list(DeadLetter.objects.filter(queue="task.submitted", deaths__gte=1))) and
                    len(r) == 5 and r, timeout=60, what="five dead letters archived")
    wait_for(lambda: all(ProcessedEvent.objects.filter(event_id=e.event_id).exists() for e in flowing),
             timeout=60, what="the events behind them to be processed")
    wait_for(lambda: queue_depth(DLQ) == 5, timeout=30, what="five messages in the DLQ")

    by_body = {bytes(row.body): row for row in rows}
    assert set(by_body) == {NOT_JSON, PLAIN_JSON, b"plain text, a header but no task", unknown_body, garbled_body}
    assert by_body[unknown_body].event_id == unknown_id and by_body[unknown_body].event_type == "NoSuchTask"
    assert by_body[garbled_body].event_id == garbled_id
    for row in rows:
        assert row.reason == "rejected" and row.status == "dead-lettered" and row.event_id

    listing = dlq("list")
    assert any(line.split()[:3] == [DLQ, "5", "5"] for line in listing.splitlines()), listing
    shown = dlq("show", "--queue", "task.submitted")
    for row in rows:
        assert row.event_id in shown
    detail = dlq("show", "--event-id", by_body[PLAIN_JSON].event_id)
    assert '"order": 17' in detail and "not an event envelope" in detail
    detail = dlq("show", "--event-id", by_body[NOT_JSON].event_id)
    assert "not json at all" in detail

    with pytest.raises(CommandError, match="not an event envelope"):
        dlq("replay", "--event-id", by_body[PLAIN_JSON].event_id)
    assert queue_depth(DLQ) == 5, "a refused replay leaves it where it was"

    # byte for byte, as published (py-amqp hands a body declared utf-8 over as text)
    left = [m.body if isinstance(m.body, bytes) else m.body.encode() for m in drain_queue(DLQ)]
    assert sorted(left) == sorted(by_body)


def test_dlq_says_in_one_line_what_is_wrong_with_its_input(stack):
    with pytest.raises(CommandError, match="say what to replay: --event-id, --queue, --event-type, or --all"):
        dlq("replay")
    with pytest.raises(CommandError, match="--all replays every dead letter"):
        dlq("replay", "--all", "--queue", "task.submitted")
    with pytest.raises(CommandError, match="no work queue 'nope'; known: task.submitted"):
        dlq("show", "--queue", "nope")
    with pytest.raises(CommandError, match="not an event id"):
        dlq("replay", "--event-id", "12")
    with pytest.raises(CommandError, match="e.g. 30m or 7d"):
        dlq("purge", "--older-than", "soon")
    missing = str(uuid.uuid4())
    with pytest.raises(CommandError, match=f"not in any dead-letter queue: {missing}"):
        dlq("replay", "--event-id", missing)


def test_dlq_says_so_when_rabbitmq_is_unreachable(broker_url):
    broker_url("amqp://guest:guest@127.0.0.1:1//")

    with pytest.raises(CommandError, match=r"cannot reach RabbitMQ at amqp://guest:\*\*@127.0.0.1:1//"):
        dlq("list")


def test_the_dead_letter_admin_lists_and_searches(admin_client):
    DeadLetter.objects.create(queue="task.submitted", event_id=str(uuid.uuid4()), event_type="TaskSubmittedEvent",
                              reason="rejected", error="ValueError: boom", deaths=1)

    page = admin_client.get("/admin/messaging/deadletter/", {"q": "boom"})

    assert page.status_code == 200
    assert "ValueError: boom" in page.content.decode()
