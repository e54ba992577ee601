"""The outbox relay, the one publisher of events: woken by the commit's NOTIFY, every event exactly once."""

import json
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import timezone

from messaging.models import OutboxMessage
from messaging.outbox import prune_outbox, publish_event
from tests.probe.events import ProbeRecordedEvent
from tests.probe.models import ProbeEffect
from tests.support import ROOT, drain_queue, outbox_relay, queue_depth, subprocess_env, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

CLOSED_PORT_URL = "amqp://guest:guest@127.0.0.1:1//"
UNCONSUMED_QUEUE = "preference.created"


def publish_while_broker_down(broker_url, count: int, label: str) -> list[OutboxMessage]:
    """Commit `count` events while RabbitMQ is unreachable (no relay runs), then make it reachable again."""
    from fitness.celery import app as celery_app

    original = celery_app.conf.broker_url
    broker_url(CLOSED_PORT_URL)
    with transaction.atomic():
        messages = [publish_event(ProbeRecordedEvent(label=f"{label}-{i}")) for i in range(count)]
    broker_url(original)
    return messages


def test_an_event_the_relay_could_not_publish_stays_in_the_outbox_with_the_error(broker_url, route_events):
    (message,) = publish_while_broker_down(broker_url, 1, "down")
    broker_url(CLOSED_PORT_URL)

    with pytest.raises(CommandError):
        call_command("relay_outbox", "--once", stdout=open("/dev/null", "w"))

    message.refresh_from_db()
    assert message.published_at is None
    assert message.publish_attempts == 1
    assert "Connection refused" in message.last_error or "ConnectionRefused" in message.last_error


def test_the_relay_delivers_it_exactly_once_when_the_broker_is_back(probe_worker, broker_url, route_events):
    (message,) = publish_while_broker_down(broker_url, 1, "relayed")

    out = subprocess.run(
        [sys.executable, "manage.py", "relay_outbox", "--once"],
        cwd=ROOT, env=subprocess_env(CELERY_BROKER_CONNECTION_TIMEOUT="30"), capture_output=True, text=True,
        timeout=120,
    )

    assert out.returncode == 0, out.stderr
    assert "published 1 event(s)" in out.stdout
    wait_for(lambda: ProbeEffect.objects.filter(label="relayed-0").exists(), what="the relayed event's effect")
    message.refresh_from_db()
    assert message.published_at is not None
    # a second relay finds nothing left to publish
    call_command("relay_outbox", "--once", stdout=open("/dev/null", "w"))
    assert ProbeEffect.objects.filter(label="relayed-0").count() == 1


def test_two_relays_running_at_once_publish_every_event_exactly_once(broker_url, route_events):
    route_events("ProbeRecordedEvent", UNCONSUMED_QUEUE)
    drain_queue(UNCONSUMED_QUEUE)
    messages = publish_while_broker_down(broker_url, 600, "concurrent")

    relays = [
        subprocess.Popen(
            [sys.executable, "manage.py", "relay_outbox", "--once", "--batch-size", "5"],
            cwd=ROOT, env=subprocess_env(CELERY_BROKER_CONNECTION_TIMEOUT="30"), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        for _ in range(2)
    ]
    outputs = [relay.communicate(timeout=180) for relay in relays]

    assert [relay.returncode for relay in relays] == [0, 0], outputs
    published = [int(out.split("published ")[1].split()[0]) for out, _ in outputs]
    assert sum(published) == 600, published
    assert not OutboxMessage.objects.filter(published_at__isnull=True).exists()
    delivered = [json.loads(m.body)[1]["event"]["event_id"] for m in drain_queue(UNCONSUMED_QUEUE)]
    assert len(delivered) == 600, "each event reached RabbitMQ exactly once"
    assert set(delivered) == {str(m.event_id) for m in messages}


def test_the_relay_exits_non_zero_with_one_line_when_the_broker_is_down(broker_url, route_events):
    publish_while_broker_down(broker_url, 2, "still-down")
    broker_url(CLOSED_PORT_URL)

    with pytest.raises(CommandError, match="RabbitMQ did not take an event, it stays pending"):
        call_command("relay_outbox", "--once", stdout=open("/dev/null", "w"))

    assert OutboxMessage.objects.filter(published_at__isnull=True).count() == 2


def test_dry_run_lists_the_backlog_and_publishes_nothing(broker_url, route_events, capsys):
    publish_while_broker_down(broker_url, 3, "dry")

    call_command("relay_outbox", "--dry-run")

    out = capsys.readouterr().out
    assert out.startswith("3 event(s) pending, oldest")
    assert out.count("ProbeRecordedEvent") == 3
    assert OutboxMessage.objects.filter(published_at__isnull=True).count() == 3


def test_pruning_removes_old_published_rows_and_never_unpublished_ones(route_events):
    route_events("ProbeRecordedEvent", UNCONSUMED_QUEUE)
    old_published = publish_event(ProbeRecordedEvent(label="old"))
    recent_published = publish_event(ProbeRecordedEvent(label="recent"))
    old_pending = publish_event(ProbeRecordedEvent(label="old-pending"))
    long_ago = timezone.now() - timedelta(days=30)
    OutboxMessage.objects.filter(pk__in=[old_published.pk, old_pending.pk]).update(created_at=long_ago)
    OutboxMessage.objects.filter(pk=old_published.pk).update(published_at=long_ago)
    OutboxMessage.objects.filter(pk=recent_published.pk).update(published_at=timezone.now())

    assert prune_outbox(older_than=timedelta(days=7)) == 1

    remaining = set(OutboxMessage.objects.values_list("pk", flat=True))
    assert remaining == {recent_published.pk, old_pending.pk}


def test_invalid_relay_options_are_refused():
    with pytest.raises(CommandError, match="must be positive"):
        call_command("relay_outbox", "--once", "--batch-size", "0")


def test_the_backlog_is_visible_as_queue_depth_only_after_publishing(broker_url, route_events):
    route_events("ProbeRecordedEvent", UNCONSUMED_QUEUE)
    drain_queue(UNCONSUMED_QUEUE)
    publish_while_broker_down(broker_url, 4, "depth")
    assert queue_depth(UNCONSUMED_QUEUE) == 0

    call_command("relay_outbox", "--once", stdout=open("/dev/null", "w"))

    wait_for(lambda: queue_depth(UNCONSUMED_QUEUE) == 4, timeout=10, what="4 messages in the queue")
    drain_queue(UNCONSUMED_QUEUE)


def delivered_ids(queue: str) -> list[str]:
    return [json.loads(m.body)[1]["event"]["event_id"] for m in drain_queue(queue)]


def test_a_commit_wakes_the_relay_at_once_far_sooner_than_its_scan(route_events, log_dir):
    route_events("ProbeRecordedEvent", UNCONSUMED_QUEUE)
    drain_queue(UNCONSUMED_QUEUE)
    relay = outbox_relay(log_dir, "relay-notified", "--interval", "60").start(timeout=120)
    try:
        publish_event(ProbeRecordedEvent(label="warm-up"))  # the relay's first broker connection
        wait_for(lambda: queue_depth(UNCONSUMED_QUEUE) == 1, timeout=30, what="the warm-up event")
        latencies = []
        for i in range(5):
            committed = time.monotonic()
            publish_event(ProbeRecordedEvent(label=f"notified-{i}"))
            wait_for(lambda n=i + 2: queue_depth(UNCONSUMED_QUEUE) == n, timeout=30, interval=0.01,
                     what="the event in the queue")
            latencies.append(time.monotonic() - committed)
    finally:
        relay.stop()
    print(f"commit -> queue (polled every 10 ms, loaded machine): {sorted(latencies)}")
    # a relay that only scanned would take up to 60 s; woken by the NOTIFY it takes milliseconds
    assert sorted(latencies)[2] < 5, latencies
    drain_queue(UNCONSUMED_QUEUE)


def test_a_lost_notification_only_delays_the_event_until_the_next_scan(route_events, log_dir):
    route_events("ProbeRecordedEvent", UNCONSUMED_QUEUE)
    drain_queue(UNCONSUMED_QUEUE)
    relay = outbox_relay(log_dir, "relay-scanning", "--interval", "2").start(timeout=120)
    try:
        with transaction.atomic():
            message = publish_event(ProbeRecordedEvent(label="unheard"))
            # as if the notification never reached the relay: a row that sends none
            OutboxMessage.objects.filter(pk=message.pk).delete()
            OutboxMessage.objects.create(
                event_id=message.event_id, event_type=message.event_type, schema_version=message.schema_version,
                queue=message.queue, envelope=message.envelope,
            )
        wait_for(lambda: queue_depth(UNCONSUMED_QUEUE) == 1, timeout=30, what="the scan to publish it")
    finally:
        relay.stop()
    assert delivered_ids(UNCONSUMED_QUEUE) == [str(message.event_id)]
    assert OutboxMessage.objects.get().published_at is not None


def test_two_running_relays_woken_by_every_commit_publish_each_event_exactly_once(route_events, log_dir):
    route_events("ProbeRecordedEvent", UNCONSUMED_QUEUE)
    drain_queue(UNCONSUMED_QUEUE)
    relays = [outbox_relay(log_dir, f"relay-twin-{n}", "--interval", "1", "--batch-size", "7").launch()
              for n in (1, 2)]
    try:
        for relay in relays:
            relay.wait_ready(timeout=120)
        messages = []
        for batch in range(40):  # both relays wake on each commit and race for its rows
            with transaction.atomic():
                messages += [publish_event(ProbeRecordedEvent(label=f"twin-{batch}-{i}")) for i in range(10)]
        wait_for(lambda: not OutboxMessage.objects.filter(published_at__isnull=True).exists(), timeout=120,
                 what="every event published")
    finally:
        for relay in relays:
            relay.stop()
    assert all("published" in relay.log() for relay in relays), "both relays took part"
    delivered = delivered_ids(UNCONSUMED_QUEUE)
    assert len(delivered) == 400, "each event reached RabbitMQ exactly once"
    assert set(delivered) == {str(m.event_id) for m in messages}
