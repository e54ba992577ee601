"""RabbitMQ blocked by a memory alarm: requests do not notice, the relay waits a bounded time and catches up.

`rabbitmqctl set_vm_memory_high_watermark 0` on a node of this module's own raises the
memory alarm: RabbitMQ stops reading from every connection that publishes, so confirms
never come. The old in-request publish waited up to 5 s per event there, holding a row lock.
"""

from __future__ import annotations

import json
import statistics
import time

import pytest
from django.core.management import call_command
from django.db import transaction

from messaging.models import OutboxMessage
from messaging.outbox import publish_event
from tests.probe.events import ProbeRecordedEvent
from tests.support import drain_queue, outbox_relay, private_rabbitmq_node, use_broker, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

QUEUE = "preference.created"  # no worker consumes it here


@pytest.fixture(scope="module")
def rabbitmq_node():
    with private_rabbitmq_node("the blocked-broker tests") as node:
        yield node


@pytest.fixture
def node(rabbitmq_node, django_db_setup, route_events):
    with use_broker(rabbitmq_node.url):
        call_command("setup_broker", verbosity=0, stdout=open("/dev/null", "w"))
        route_events("ProbeRecordedEvent", QUEUE)
        drain_queue(QUEUE)
        yield rabbitmq_node
        rabbitmq_node.ctl("set_vm_memory_high_watermark", "0.4")


def memory_alarm(node) -> bool:
    return "Memory alarm on node" in node.ctl("status")  # 3.10 has no list_alarms


def timed_publishes(count: int, label: str) -> list[float]:
    times = []
    for i in range(count):
        started = time.perf_counter()
        with transaction.atomic():
            publish_event(ProbeRecordedEvent(label=f"{label}-{i}"))
        times.append(time.perf_counter() - started)
    return times


def test_with_the_broker_blocked_publish_event_is_as_fast_and_the_relay_catches_up(node, log_dir):
    relay = outbox_relay(log_dir, "relay-blocked", "--interval", "1").start(timeout=120)
    try:
        free = timed_publishes(30, "free")
        wait_for(lambda: not OutboxMessage.objects.filter(published_at__isnull=True).exists(), timeout=60,
                 what="the relay to publish while RabbitMQ is free")

        node.ctl("set_vm_memory_high_watermark", "0")
        wait_for(lambda: memory_alarm(node), timeout=30, what="the memory alarm")
        blocked = timed_publishes(30, "blocked")
        # the relay tries, its confirms do not come, and it backs off instead of hanging
        wait_for(lambda: "relay backs off" in relay.log(), timeout=60, what="the relay to back off")
        assert OutboxMessage.objects.filter(published_at__isnull=True).count() == 30

        node.ctl("set_vm_memory_high_watermark", "0.4")
        wait_for(lambda: not OutboxMessage.objects.filter(published_at__isnull=True).exists(), timeout=120,
                 what="the relay to catch up once the alarm cleared")
    finally:
        relay.stop()
    print(f"publish_event p50 free {statistics.median(free) * 1000:.2f} ms, "
          f"blocked {statistics.median(blocked) * 1000:.2f} ms (noisy machine)")
    # no timing goal here (benchmarks/publish.py measures): only that nothing waits for a confirm
    assert max(blocked) < 1.0, blocked
    delivered = {json.loads(m.body)[1]["event"]["event_id"] for m in drain_queue(QUEUE)}
    assert delivered == {str(e) for e in OutboxMessage.objects.values_list("event_id", flat=True)}
