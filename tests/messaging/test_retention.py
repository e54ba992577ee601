"""Retention: `manage.py prune` and its batches, the settings' checks, the replay window."""

import io
import uuid
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from messaging.checks import check_retention
from messaging.models import DeadLetter, OutboxMessage, ProcessedEvent
from messaging.retention import prune_all, prune_target, replay_refusal
from monitoring.models import Equipment, TelemetryReading
from notifications.models import DeviceToken, Notification, PushDelivery
from tests import factories

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


def processed(n: int, *, age: timedelta) -> None:
    rows = ProcessedEvent.objects.bulk_create(
        ProcessedEvent(consumer="c", event_id=uuid.uuid4(), event_type="E") for _ in range(n)
    )
    ProcessedEvent.objects.filter(pk__in=[r.pk for r in rows]).update(processed_at=timezone.now() - age)


def prune(*args: str) -> str:
    out = io.StringIO()
    call_command("prune", *args, stdout=out)
    return out.getvalue()


def test_processed_events_past_the_dedup_window_go_in_bounded_batches_and_the_rest_stay():
    processed(23, age=22 * DAY)  # past the 21-day window
    processed(4, age=20 * DAY)

    (result,) = prune_all(tables=["processed-events"], batch_size=5)

    assert (result.deleted, result.batches, result.finished) == (23, 5, True)
    assert ProcessedEvent.objects.count() == 4


def test_a_dry_run_counts_and_deletes_nothing():
    processed(3, age=30 * DAY)

    out = prune("--dry-run", "--table", "processed-events")

    assert "processed-events   would delete 3 rows older than" in out
    assert ProcessedEvent.objects.count() == 3


def test_the_command_reports_each_table_it_pruned():
    processed(7, age=30 * DAY)

    out = prune("--batch-size", "2")

    assert "processed-events   deleted 7 rows older than" in out and "in 4 batches" in out
    for table in ("dead-letters", "outbox", "telemetry", "push-deliveries", "notifications"):
        assert f"{table:<18} deleted 0 rows" in out
    assert ProcessedEvent.objects.count() == 0


def test_the_time_budget_stops_between_batches_and_says_so():
    processed(10, age=30 * DAY)

    out = prune("--table", "processed-events", "--batch-size", "2", "--max-seconds", "0.000001")

    assert "stopped by --max-seconds, older rows remain" in out
    assert ProcessedEvent.objects.count() >= 8  # at most one batch went


@pytest.mark.parametrize("args", [["--batch-size", "0"], ["--max-seconds", "-1"]])
def test_bad_arguments_are_refused_and_change_nothing(args):
    processed(2, age=30 * DAY)

    with pytest.raises(CommandError):
        prune(*args)

    assert ProcessedEvent.objects.count() == 2


def test_help_lists_every_table_with_its_setting():
    from messaging.management.commands.prune import Command

    text = Command().create_parser("manage.py", "prune").format_help()
    for table, setting in [
        ("processed-events", "PROCESSED_EVENT_RETENTION_DAYS"), ("telemetry", "TELEMETRY_RETENTION_DAYS"),
        ("notifications", "NOTIFICATION_RETENTION_DAYS"), ("push-deliveries", "PUSH_DELIVERY_RETENTION_DAYS"),
        ("dead-letters", "DEAD_LETTER_RETENTION_DAYS"), ("outbox", "OUTBOX_RETENTION_DAYS"),
        ("event-log", "EVENT_LOG_RETENTION_DAYS"), ("event-activities", "EVENT_ACTIVITY_RETENTION_DAYS"),
    ]:
        assert table in text and setting in text


def test_the_audit_trail_goes_by_when_it_was_recorded():
    from audit.models import EventLogEntry
    from messaging.models import EventActivity

    now = timezone.now()
    for age in (91, 89):
        entry = EventLogEntry.objects.create(
            event_id=uuid.uuid4(), event_type="TaskSubmittedEvent", schema_version=1, producer="tasks",
            occurred_at=now - age * DAY, payload={},
        )
        EventLogEntry.objects.filter(pk=entry.pk).update(recorded_at=now - age * DAY)
        EventActivity.objects.create(event_id=entry.event_id, event_type="TaskSubmittedEvent", subscriber="audit",
                                     kind="processed", at=now - age * DAY)

    results = {result.table: result.deleted for result in prune_all(tables=["event-log", "event-activities"])}

    assert results == {"event-log": 1, "event-activities": 1}
    assert EventLogEntry.objects.get().recorded_at > now - 90 * DAY
    assert EventActivity.objects.get().at > now - 90 * DAY


def test_telemetry_goes_by_when_it_was_received():
    equipment = Equipment.objects.create(
        branch=factories.branch(), kind="washer", name="washer-1", api_key_hash="h" * 64, api_key_prefix="h"
    )
    now = timezone.now()
    for age in (31, 29):
        reading = TelemetryReading.objects.create(equipment=equipment, recorded_at=now)
        TelemetryReading.objects.filter(pk=reading.pk).update(received_at=now - age * DAY)

    (result,) = prune_all(tables=["telemetry"])

    assert result.deleted == 1
    assert TelemetryReading.objects.get().received_at > now - 30 * DAY


def notification(recipient, *, status: str, age: timedelta, deliveries: list[str]) -> Notification:
    row = Notification.objects.create(
        recipient=recipient, kind="equipment_fault", key=f"k{uuid.uuid4()}", event_id=uuid.uuid4(),
        title="t", body="b", status=status,
    )
    Notification.objects.filter(pk=row.pk).update(created_at=timezone.now() - age)
    for state in deliveries:
        device = DeviceToken.objects.create(user=recipient, token=f"tok-{uuid.uuid4()}", platform="android")
        PushDelivery.objects.create(notification=row, device=device, status=state)
    return row


def test_finished_notifications_go_with_their_deliveries_and_pending_ones_stay():
    owner = factories.user()
    old_sent = notification(owner, status="sent", age=91 * DAY, deliveries=["sent", "unregistered"])
    old_pending = notification(owner, status="pending", age=91 * DAY, deliveries=["pending"])
    recent = notification(owner, status="sent", age=10 * DAY, deliveries=["sent"])

    results = {r.table: r for r in prune_all(tables=["notifications"])}

    assert (results["notifications"].deleted, results["notifications"].children_deleted) == (1, 2)
    assert set(Notification.objects.values_list("pk", flat=True)) == {old_pending.pk, recent.pk}
    assert not PushDelivery.objects.filter(notification_id=old_sent.pk).exists()


def test_finished_push_deliveries_go_before_their_notification():
    owner = factories.user()
    kept = notification(owner, status="sent", age=40 * DAY, deliveries=["sent", "failed", "pending"])

    (result,) = prune_all(tables=["push-deliveries"])

    assert result.deleted == 2
    assert list(PushDelivery.objects.values_list("status", flat=True)) == ["pending"]
    assert Notification.objects.filter(pk=kept.pk).exists()  # the inbox keeps it for 90 days


def dead_letter(*, age: timedelta, replayed: bool = False, purged: bool = False, deaths: int = 1) -> DeadLetter:
    at = timezone.now() - age
    return DeadLetter.objects.create(
        queue="task.submitted", event_id=str(uuid.uuid4()), deaths=deaths, first_dead_at=at, last_dead_at=at,
        replays=1 if replayed else 0, replayed_at=at if replayed else None,
        purges=1 if purged else 0, purged_at=at if purged else None,
    )


def test_dead_letter_history_goes_once_replayed_or_purged_never_while_still_in_the_dlq():
    replayed = dead_letter(age=91 * DAY, replayed=True)
    purged = dead_letter(age=91 * DAY, purged=True)
    waiting = dead_letter(age=200 * DAY)  # still in its .dlq: its history stays, however old
    died_again = dead_letter(age=91 * DAY, replayed=True, deaths=2)
    recent = dead_letter(age=10 * DAY, replayed=True)

    (result,) = prune_all(tables=["dead-letters"])

    assert result.deleted == 2
    assert not DeadLetter.objects.filter(pk__in=[replayed.pk, purged.pk]).exists()
    assert set(DeadLetter.objects.values_list("pk", flat=True)) == {waiting.pk, died_again.pk, recent.pk}


def test_only_published_outbox_rows_go():
    def row(published: bool) -> OutboxMessage:
        message = OutboxMessage.objects.create(
            event_id=uuid.uuid4(), event_type="E", schema_version=1, queue="task.submitted", envelope={}
        )
        OutboxMessage.objects.filter(pk=message.pk).update(
            created_at=timezone.now() - 30 * DAY, published_at=timezone.now() - 30 * DAY if published else None
        )
        return message

    row(True)
    pending = row(False)

    (result,) = prune_all(tables=["outbox"])

    assert result.deleted == 1
    assert list(OutboxMessage.objects.values_list("pk", flat=True)) == [pending.pk]


def test_an_unknown_table_is_a_lookup_error():
    with pytest.raises(LookupError, match="known: processed-events"):
        prune_target("nope")


# --- the settings' relationships -------------------------------------------------------------
def error_ids() -> list[str]:
    return [error.id for error in check_retention()]


def test_the_default_settings_pass_the_checks():
    assert error_ids() == []


def test_a_dedup_window_no_longer_than_the_replay_window_is_refused():
    # 14 days of replay plus the retry schedule (7 s) does not fit in 14 days of dedup records
    with override_settings(PROCESSED_EVENT_RETENTION_DAYS=14, DEAD_LETTER_REPLAY_MAX_AGE_DAYS=14,
                           PUSH_DELIVERY_RETENTION_DAYS=14):
        assert error_ids() == ["retention.E002"]


def test_push_deliveries_kept_shorter_than_the_dedup_window_are_refused():
    with override_settings(PUSH_DELIVERY_RETENTION_DAYS=7):
        assert error_ids() == ["retention.E003"]


def test_telemetry_kept_shorter_than_the_oldest_accepted_reading_is_refused():
    with override_settings(TELEMETRY_RETENTION_DAYS=3):
        assert error_ids() == ["retention.E004"]


@pytest.mark.parametrize("value", [0, -1, 1.5])
def test_a_retention_that_is_not_a_positive_whole_number_is_refused(value):
    with override_settings(TELEMETRY_RETENTION_DAYS=value):
        assert error_ids() == ["retention.E001"]


def test_the_check_runs_with_every_management_command():
    with override_settings(PROCESSED_EVENT_RETENTION_DAYS=1), pytest.raises(Exception, match="retention.E002"):
        call_command("check")


# --- the replay window -----------------------------------------------------------------------
def test_an_event_older_than_the_replay_window_is_refused_a_recent_one_is_not():
    now = timezone.now()
    old = {"occurred_at": (now - 15 * DAY).isoformat()}
    recent = {"occurred_at": (now - 13 * DAY).isoformat()}

    assert "beyond the 14-day replay window" in replay_refusal(old, now=now)
    assert replay_refusal(recent, now=now) is None
    assert replay_refusal({"occurred_at": "not a time"}, now=now) is None  # nothing to judge by
