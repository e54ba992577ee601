"""A row RabbitMQ refuses backs off alone: the relay publishes every row behind it.

"RabbitMQ is down" (no connection) stops the batch; "RabbitMQ refuses this message"
(returned as unroutable under `mandatory`, or nacked) backs off that row alone with a
`next_attempt_at` and its error, and the relay carries on. `manage.py outbox` lets an
operator retry such a row now or discard it, recording who did it.
"""

from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import timezone
from kombu import Queue

from fitness import topology
from messaging.contracts import EquipmentFaultEvent
from messaging.models import OutboxMessage
from messaging.outbox import publish_event
from tests.probe.events import ProbeFailingEvent, ProbeRecordedEvent
from tests.support import ROOT, broker_connection, private_rabbitmq_node, subprocess_env, use_broker

pytestmark = pytest.mark.django_db(transaction=True)

CLOSED_PORT_URL = "amqp://guest:guest@127.0.0.1:1//"
MISSING_QUEUE = "removed.queue"  # nothing is bound for it: RabbitMQ returns the message (mandatory)
REFUSING_QUEUE = "refusing.queue"  # max-length 0 with reject-publish: RabbitMQ nacks every publish
FAULTS = "equipment.fault"


@contextmanager
def connected():
    """A connection to this test's vhost; the shared broker can be slow to accept one, so retry."""
    with broker_connection() as conn:
        conn.ensure_connection(max_retries=5)
        yield conn


def declare(name: str, **arguments) -> None:
    with connected() as conn:
        Queue(name, exchange=topology.EVENTS_EXCHANGE, routing_key=name, durable=True,
              queue_arguments=arguments or None).bind(conn.default_channel).declare()


def drain(name: str) -> list:
    with connected() as conn:
        messages = []
        while (message := conn.default_channel.basic_get(name, no_ack=False)) is not None:
            conn.default_channel.basic_ack(message.delivery_tag)
            messages.append(message)
        return messages


@pytest.fixture(scope="module")
def rabbitmq_node():
    """A RabbitMQ node of this module's own: the shared one stalls for tens of seconds when many
    runs create and delete vhosts at once, and these tests count what reaches each queue."""
    with private_rabbitmq_node("these tests") as node:
        yield node


@pytest.fixture
def vhost(rabbitmq_node, django_db_setup, route_events):
    """The private node with the topology, a refusing queue, no queue for MISSING_QUEUE, and empty queues."""
    with use_broker(rabbitmq_node.url) as url:
        call_command("setup_broker", verbosity=0, stdout=open("/dev/null", "w"))
        with connected() as conn:
            for name in (MISSING_QUEUE, REFUSING_QUEUE):
                conn.default_channel.queue_delete(name)
        declare(REFUSING_QUEUE, **{"x-max-length": 0, "x-overflow": "reject-publish"})
        drain(FAULTS)
        route_events("ProbeRecordedEvent", MISSING_QUEUE)
        route_events("ProbeFailingEvent", REFUSING_QUEUE)
        yield url


def fault_alert() -> EquipmentFaultEvent:
    return EquipmentFaultEvent(
        fault_id=1, equipment_id=2, branch_id=3, code="E21", severity="critical",
        message="drum motor overheated", detected_at=datetime.now(UTC),
    )


def commit_while_the_broker_is_down() -> tuple[OutboxMessage, OutboxMessage, OutboxMessage]:
    """An unroutable row, a nacked row and a fault alert behind them, all committed while RabbitMQ was down."""
    with use_broker(CLOSED_PORT_URL), transaction.atomic():
        unroutable = publish_event(ProbeRecordedEvent(label="to a removed queue"))
        nacked = publish_event(ProbeFailingEvent(label="to a refusing queue", attempt_log=""))
        alert = publish_event(fault_alert())
    return unroutable, nacked, alert


def relay_once() -> subprocess.CompletedProcess:
    """`relay_outbox --once`, run again while it says RabbitMQ could not be used (what the
    long-running relay does: this machine's shared broker sometimes stalls new connections)."""
    for _ in range(5):
        result = subprocess.run(
            [sys.executable, "manage.py", "relay_outbox", "--once"],
            cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120,
        )
        if "RabbitMQ did not take an event" not in result.stderr:
            return result
    return result


def outbox(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("outbox", *args, stdout=out)
    return out.getvalue()


def test_a_refused_row_backs_off_alone_and_the_fault_alert_behind_it_is_published(vhost):
    unroutable, nacked, alert = commit_while_the_broker_is_down()
    drain(FAULTS)

    before = timezone.now()
    result = relay_once()

    assert result.returncode == 0, result.stdout + result.stderr
    assert "refused by RabbitMQ, backed off" in result.stdout
    (delivered,) = drain(FAULTS)
    assert delivered.headers["event_id"] == str(alert.event_id)
    alert.refresh_from_db()
    assert alert.published_at is not None
    for row, error in ((unroutable, "no queue is bound"), (nacked, "nacked")):
        row.refresh_from_db()
        assert row.published_at is None
        assert row.refusals == 1
        assert error in row.last_error, row.last_error
        assert row.next_attempt_at > before
        assert row.next_attempt_at - row.last_attempt_at <= timedelta(seconds=60)

    # backing off: a relay run right after leaves them alone
    attempts = {row.pk: row.publish_attempts for row in (unroutable, nacked)}
    assert relay_once().returncode == 0
    assert {row.pk: row.publish_attempts for row in OutboxMessage.objects.filter(pk__in=attempts)} == attempts


def test_the_backoff_grows_with_each_refusal_up_to_its_cap(vhost, settings):
    unroutable, _, _ = commit_while_the_broker_is_down()
    call_command("relay_outbox", "--once", stdout=open("/dev/null", "w"))
    waits = []
    for _ in range(12):
        unroutable.refresh_from_db()
        waits.append((unroutable.next_attempt_at - unroutable.last_attempt_at).total_seconds())
        OutboxMessage.objects.filter(pk=unroutable.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
        call_command("relay_outbox", "--once", stdout=open("/dev/null", "w"))

    assert waits[0] == pytest.approx(settings.OUTBOX_REFUSED_BACKOFF_SECONDS, abs=0.5)
    assert waits[1] == pytest.approx(2 * waits[0], abs=0.5)
    assert max(waits) == pytest.approx(settings.OUTBOX_REFUSED_BACKOFF_MAX_SECONDS, abs=0.5)
    assert waits == sorted(waits)


def test_an_operator_retries_a_refused_row_now_and_it_is_published_once_its_queue_exists(vhost):
    unroutable, _, _ = commit_while_the_broker_is_down()
    call_command("relay_outbox", "--once", stdout=open("/dev/null", "w"))

    out = outbox("retry", str(unroutable.pk), "--by", "alice")
    assert "refused again" in out and "no queue is bound" in out
    unroutable.refresh_from_db()
    assert (unroutable.refusals, unroutable.retried_by, unroutable.published_at) == (2, "alice", None)
    assert unroutable.retried_at is not None

    declare(MISSING_QUEUE)  # the topology change is undone
    out = outbox("retry", str(unroutable.pk), "--by", "alice")

    assert f"{unroutable.pk}" in out and "published" in out
    unroutable.refresh_from_db()
    assert unroutable.published_at is not None
    (delivered,) = drain(MISSING_QUEUE)
    assert delivered.headers["event_id"] == str(unroutable.event_id)


def test_an_operator_discards_a_row_which_is_kept_and_never_published(vhost):
    _, nacked, _ = commit_while_the_broker_is_down()
    call_command("relay_outbox", "--once", stdout=open("/dev/null", "w"))

    out = outbox("discard", str(nacked.pk), "--reason", "refusing.queue was removed for good", "--by", "bob")

    assert "discarded 1" in out
    nacked.refresh_from_db()
    assert nacked.discarded_at is not None and nacked.published_at is None
    assert (nacked.discarded_by, nacked.discard_reason) == ("bob", "refusing.queue was removed for good")
    # even when its time comes and its queue takes messages again, the relay never publishes it
    with connected() as conn:
        conn.default_channel.queue_delete(REFUSING_QUEUE)
    declare(REFUSING_QUEUE)
    OutboxMessage.objects.filter(pk=nacked.pk).update(next_attempt_at=timezone.now() - timedelta(minutes=1))
    assert relay_once().returncode == 0
    nacked.refresh_from_db()
    assert nacked.published_at is None
    assert drain(REFUSING_QUEUE) == []
    with pytest.raises(CommandError, match=f"{nacked.pk}: discarded"):
        outbox("retry", str(nacked.pk))


def test_all_failing_with_dry_run_lists_them_and_changes_nothing(vhost):
    unroutable, nacked, alert = commit_while_the_broker_is_down()
    call_command("relay_outbox", "--once", stdout=open("/dev/null", "w"))
    before = list(OutboxMessage.objects.order_by("pk").values())

    out = outbox("retry", "--all-failing", "--dry-run")

    assert "would retry 2" in out and str(unroutable.pk) in out and str(nacked.pk) in out
    assert str(alert.event_id) not in out
    assert list(OutboxMessage.objects.order_by("pk").values()) == before
    listed = outbox("list")
    assert "no queue is bound" in listed and "nacked" in listed


@pytest.mark.parametrize("args, message", [
    (["discard", "999999", "--reason", "typo"], "no outbox message 999999"),
    (["retry", "999999"], "no outbox message 999999"),
    (["discard", "{bad}"], "--reason"),
    (["retry"], "say which"),
    (["retry", "{alert}"], "{alert}: already published"),
    (["discard", "{alert}", "--reason", "late"], "{alert}: already published"),
])
def test_bad_ids_and_missing_arguments_are_one_line_errors_that_change_nothing(vhost, args, message):
    unroutable, _, alert = commit_while_the_broker_is_down()
    call_command("relay_outbox", "--once", stdout=open("/dev/null", "w"))
    ids = {"bad": unroutable.pk, "alert": alert.pk}
    before = list(OutboxMessage.objects.order_by("pk").values())

    with pytest.raises(CommandError) as raised:
        outbox(*[arg.format(**ids) for arg in args])

    assert message.format(**ids) in str(raised.value)
    assert "\n" not in str(raised.value)
    assert list(OutboxMessage.objects.order_by("pk").values()) == before


def test_a_good_and_a_bad_id_together_change_nothing(vhost):
    unroutable, _, _ = commit_while_the_broker_is_down()
    call_command("relay_outbox", "--once", stdout=open("/dev/null", "w"))

    with pytest.raises(CommandError, match="no outbox message 999999"):
        outbox("discard", str(unroutable.pk), "999999", "--reason", "x")
    unroutable.refresh_from_db()
    assert unroutable.discarded_at is None


def test_the_command_reads_well_and_exits_non_zero_on_a_bad_id():
    help_text = subprocess.run([sys.executable, "manage.py", "outbox", "--help"], cwd=ROOT, env=subprocess_env(),
                               capture_output=True, text=True, timeout=60)
    assert help_text.returncode == 0
    for word in ("list", "retry", "discard", "next_attempt_at"):
        assert word in help_text.stdout
    bad = subprocess.run([sys.executable, "manage.py", "outbox", "retry", "not-a-number"], cwd=ROOT,
                         env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0
    assert "not-a-number" in bad.stderr and "Traceback" not in bad.stderr
