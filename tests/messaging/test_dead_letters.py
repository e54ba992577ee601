"""Dead letters end to end: a real worker, the archiver, and `manage.py dlq` on a vhost of their own."""

import io
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.management import CommandError, call_command

from messaging import dead_letters
from messaging.errors import BrokerUnavailable
from messaging.models import DeadLetter, ProcessedEvent
from messaging.outbox import publish_event
from tests.observability.scrape import scrape
from tests.probe.events import ProbeFixableEvent
from tests.probe.models import ProbeEffect
from tests.support import WorkerProcess, dead_letter_archiver, own_vhost, queue_depth, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

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
    publish = dead_letters.publish_envelope
    published = []

    def broker_fails_on_the_second(queue, body, **options):
        if len(published) == 1:
            raise BrokerUnavailable("RabbitMQ went away")
        publish(queue, body, **options)
        published.append(body["event_id"])

    monkeypatch.setattr(dead_letters, "publish_envelope", broker_fails_on_the_second)
    with pytest.raises(CommandError, match="stopped early, the rest stays in the dead-letter queue: RabbitMQ went"):
        dlq("replay", "--event-type", "ProbeFixableEvent")

    wait_for(lambda: ProbeEffect.objects.filter(label__startswith="midway-").count() == 1, what="the one replayed")
    # the message in hand when the publish failed went back to the DLQ, with the one not reached
    wait_for(lambda: queue_depth(DLQ) == 2, timeout=10, what="the two not replayed to be in the DLQ")
    monkeypatch.setattr(dead_letters, "publish_envelope", publish)
    assert "replayed 2 dead letter(s)" in dlq("replay", "--event-type", "ProbeFixableEvent")
    wait_for(lambda: ProbeEffect.objects.filter(label__startswith="midway-").count() == 3, what="the rest")
    assert queue_depth(DLQ) == 0
    for event in events:
        assert ProbeEffect.objects.filter(event_id=event.event_id, label__startswith="midway-").count() == 1


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
