"""The dead letters' history in PostgreSQL: parsing x-death, archiving once per death, hooks."""

import uuid
from datetime import UTC, datetime

import pytest

from messaging.contracts import TaskSubmittedEvent
from messaging.dead_letters.archive import dead_letter_archive
from messaging.dead_letters.failures import consumer_failure_record
from messaging.dead_letters.messages import REPLAY_HEADER, parse_dead_letter
from messaging.events import Envelope
from messaging.models import DeadLetter
from tasks.models import LaundryTask
from tests import factories
from tests.observability.scrape import scrape

pytestmark = pytest.mark.django_db

DIED = datetime(2026, 11, 26, 11, 27, 51)  # AMQP timestamps arrive naive, in UTC


def celery_body(envelope: dict) -> list:
    return [[], {"event": envelope}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]


def dead_letter(envelope: dict, *, reason: str = "rejected", retries: int = 0, replays: int = 0,
                died: datetime = DIED, **headers):
    headers = {
        "id": envelope["event_id"], "task": envelope["event_type"], "retries": retries,
        "x-death": [
            {"count": 1, "reason": reason, "queue": "task.submitted", "time": died, "exchange": "fitness.events",
             "routing-keys": ["task.submitted"]},
            {"count": 1, "reason": "expired", "queue": "celery_delayed_0", "time": datetime(2026, 11, 26, 11, 27, 44),
             "exchange": "celery_delayed_0", "routing-keys": ["task.submitted"]},
        ],
        **({REPLAY_HEADER: replays} if replays else {}),
        **headers,
    }
    return parse_dead_letter("task.submitted", headers, celery_body(envelope))


def task_event(task_id: int = 1) -> dict:
    event = TaskSubmittedEvent(task_id=task_id, branch_id=1, helper_id=1, photo="tasks/x.jpg")
    return Envelope.wrap(event, correlation_id="req-1").as_message_body()


def test_the_x_death_header_gives_the_reason_the_attempts_and_the_times():
    envelope = task_event()

    rejected = dead_letter(envelope, retries=3)
    crashed = dead_letter(envelope, reason="delivery_limit")

    assert (rejected.reason, rejected.attempts, rejected.deaths) == ("rejected", 4, 1)
    assert rejected.dead_at == DIED.replace(tzinfo=UTC)
    assert rejected.first_failed_at == datetime(2026, 11, 26, 11, 27, 44, tzinfo=UTC)
    assert (rejected.event_id, rejected.event_type, rejected.envelope) == (
        envelope["event_id"], "TaskSubmittedEvent", envelope)
    assert (crashed.reason, crashed.attempts) == ("delivery_limit", 6)  # delivery limit 5, then dead-lettered


def test_a_body_that_is_not_an_event_is_kept_but_cannot_be_replayed():
    message = parse_dead_letter("task.submitted", {"id": "abc", "task": "NoSuchEvent"}, [[], {"event": {}}, {}])

    assert (message.event_id, message.event_type, message.replayable) == ("abc", "NoSuchEvent", False)


def test_the_same_death_archived_twice_is_one_death_and_a_death_after_a_replay_is_another():
    envelope = task_event()
    consumer_failure_record(queue="task.submitted", event_id=envelope["event_id"], event_type="TaskSubmittedEvent",
                            consumer="ml.read_task_photo", error="ValueError: bad")

    first = dead_letter_archive(dead_letter(envelope))
    again = dead_letter_archive(dead_letter(envelope))  # the archive queue redelivered it
    row = DeadLetter.objects.get(event_id=envelope["event_id"])
    assert (first.new_death, again.new_death, row.deaths, row.status) == (True, False, 1, "dead-lettered")
    assert (row.error, row.consumer, row.reason) == ("ValueError: bad", "ml.read_task_photo", "rejected")

    DeadLetter.objects.filter(pk=row.pk).update(replays=1, replayed_at=datetime.now(UTC), replayed_by="ops")
    assert DeadLetter.objects.get(pk=row.pk).status == "replayed"
    after_replay = dead_letter_archive(dead_letter(envelope, replays=1))  # the same second, even

    row.refresh_from_db()
    assert (after_replay.new_death, row.deaths, row.status) == (True, 2, "dead-lettered")


def test_an_archiver_running_behind_a_replay_still_ends_with_the_event_replayed():
    envelope = task_event()
    DeadLetter.objects.create(queue="task.submitted", event_id=envelope["event_id"], replays=1,
                              replayed_at=datetime.now(UTC), replayed_by="ops")

    dead_letter_archive(dead_letter(envelope))

    assert DeadLetter.objects.get(event_id=envelope["event_id"]).status == "replayed"


def test_a_dead_letter_nobody_explained_says_where_to_look():
    envelope = task_event()

    result = dead_letter_archive(dead_letter(envelope))

    assert f"see the worker log for event_id={envelope['event_id']}" in result.record.error


def test_a_task_whose_worker_kept_dying_is_marked_failed_by_the_archiver():
    helper = factories.helper()
    task = LaundryTask.objects.create(
        branch=helper.helper.branch, helper=helper, photo="tasks/x.jpg", photo_sha256="0" * 64, photo_size=1,
        photo_content_type="image/jpeg", status=LaundryTask.Status.ANALYZING,
    )
    envelope = task_event(task.pk)

    result = dead_letter_archive(dead_letter(envelope, reason="delivery_limit"))

    assert result.hook_ran
    task.refresh_from_db()
    assert task.status == LaundryTask.Status.FAILED
    assert "the worker died while handling it (6 deliveries" in task.failure_reason
    assert result.record.consumer == "ml.read_task_photo"
    assert "dead-lettered by the queue's delivery limit" in result.record.error


def test_every_death_is_counted_once_by_reason_those_of_dying_workers_included():
    def archived(reason: str) -> float:
        return scrape().value("fitness_dead_letters_archived_total", 0.0, queue="task.submitted",
                              event_type="TaskSubmittedEvent", reason=reason)

    rejected, died = archived("rejected"), archived("delivery_limit")
    gave_up, killed = task_event(), task_event()

    dead_letter_archive(dead_letter(gave_up))
    dead_letter_archive(dead_letter(killed, reason="delivery_limit"))
    dead_letter_archive(dead_letter(killed, reason="delivery_limit"))  # redelivered to the archiver: not again

    assert (archived("rejected"), archived("delivery_limit")) == (rejected + 1, died + 1)


def test_the_status_of_a_purged_dead_letter():
    row = DeadLetter(queue="q", event_id=str(uuid.uuid4()), deaths=1, purges=1, purged_at=datetime.now(UTC))

    assert row.status == "purged"


def test_a_message_without_an_id_is_named_by_its_body_and_kept_byte_for_byte():
    from messaging.dead_letters.messages import body_id, dead_letter_of_record, parse_raw_dead_letter

    raw = b"\xff\x00 not an envelope"
    headers = {"x-death": [{"count": 1, "reason": "rejected", "queue": "task.submitted", "time": DIED}]}

    first = dead_letter_archive(parse_raw_dead_letter("task.submitted", headers, raw, None))
    again = dead_letter_archive(parse_raw_dead_letter("task.submitted", headers, raw, None))  # redelivered

    row = DeadLetter.objects.get(event_id=body_id(raw))
    assert (first.new_death, again.new_death, row.deaths) == (True, False, 1)
    assert bytes(row.body) == raw and row.headers["x-death"][0]["time"] == "2026-11-26T11:27:51+00:00"
    shown = dead_letter_of_record(row)
    assert (shown.raw_body, shown.event_id, shown.replayable, shown.reason) == (raw, row.event_id, False, "rejected")
    assert shown.dead_at == DIED.replace(tzinfo=UTC)


def test_the_history_shows_an_event_as_the_queue_would():
    from messaging.dead_letters.messages import dead_letter_of_record

    envelope = task_event()
    dead_letter_archive(dead_letter(envelope, retries=3))

    shown = dead_letter_of_record(DeadLetter.objects.get(event_id=envelope["event_id"]))

    assert (shown.envelope, shown.replayable, shown.attempts, shown.event_type) == (
        envelope, True, 4, "TaskSubmittedEvent")
    assert shown.first_failed_at == datetime(2026, 11, 26, 11, 27, 44, tzinfo=UTC)
