"""Queue depths (`observability.queue_stats`, the `fitness_queue_*` gauges) against the broker's own counts.

A vhost of this module's own, with nobody consuming: the counts are exactly what the tests put there.
"""

from __future__ import annotations

import os

import pytest
from django.core.management import call_command
from django.test import override_settings
from kombu import Producer

from fitness import topology
from observability.queue_stats import QueueNotDeclared, queue_depths, topology_queues
from tests.observability.scrape import closed_port, scrape
from tests.support import broker_connection, own_vhost, wait_for

pytestmark = pytest.mark.django_db

WORK, DLQ, OTHER_DLQ = "equipment.fault", "task.submitted.dlq", "mlops.dlq"


@pytest.fixture(scope="module")
def vhost(django_db_setup, broker_vhost):
    with own_vhost("depths") as url:
        yield url.rsplit("/", 1)[-1]


def broker_counts(vhost: str, unacked: dict[str, int] | None = None) -> dict[str, tuple[int, int, int]]:
    """RabbitMQ's own figures: queue -> (ready, unacked, consumers).

    Ready and consumers from passive declares, which the queue's leader answers at once
    (rabbitmqctl's and the management API's figures of quorum queues lag); unacked is what
    the test holds itself.
    """
    counts = {}
    with broker_connection() as connection:
        assert connection.virtual_host == vhost
        channel = connection.default_channel
        for name, _ in topology_queues():
            _, ready, consumers = channel.queue_declare(name, passive=True)
            counts[name] = (ready, (unacked or {}).get(name, 0), consumers)
    return counts


def metrics_counts() -> dict[str, tuple[float | None, float | None, float | None]]:
    found = scrape()
    return {
        name: tuple(
            found.value(gauge, queue=name, kind=kind)
            for gauge in ("fitness_queue_messages_ready", "fitness_queue_messages_unacked", "fitness_queue_consumers")
        )
        for name, kind in topology_queues()
    }


def put(queue: str, count: int) -> None:
    """Publish `count` persistent messages straight into `queue` (the default exchange), confirmed."""
    with broker_connection() as connection:
        producer = Producer(connection.default_channel)
        for n in range(count):
            producer.publish({"n": n}, exchange="", routing_key=queue, serializer="json", delivery_mode="persistent")


def test_queue_depths_in_metrics_equal_the_brokers_counts(vhost):
    put(WORK, 5)
    put(DLQ, 3)
    put(OTHER_DLQ, 1)
    with broker_connection() as holder:  # two messages delivered and not acknowledged
        channel = holder.default_channel
        held = [channel.basic_get(WORK, no_ack=False) for _ in range(2)]
        assert all(held)

        expected = broker_counts(vhost, unacked={WORK: 2})
        assert (expected[WORK][:2], expected[DLQ], expected[OTHER_DLQ]) == ((3, 2), (3, 0, 0), (1, 0, 0))
        # the management API's figures lag by its statistics interval (5 s): wait, never sleep
        wait_for(lambda: metrics_counts() == expected, timeout=30, interval=0.5,
                 what=f"/metrics queue depths to equal the broker's {expected}")

        found = scrape()
        assert found.value("fitness_queue_stats_up") == 1
        assert found.value("fitness_queue_stats_from_management_api") == 1
        assert found.value("fitness_queue_messages_ready", queue=DLQ, kind="dead-letter") == 3
        depths = queue_depths()
        assert [(d.name, d.kind) for d in depths] == topology_queues()
        assert {d.source for d in depths} == {"management"}
        assert [d for d in depths if d.name == WORK][0].unacked == 2


@pytest.fixture
def some_messages(vhost):
    """At least one message ready in a work queue and a DLQ."""
    counts = broker_counts(vhost)
    for queue in (WORK, DLQ):
        if counts[queue][0] == 0:
            put(queue, 1)


@pytest.mark.parametrize("management_url", ["closed port", "wrong password"])
def test_without_the_management_api_passive_declares_give_ready_and_consumers(vhost, some_messages, management_url):
    url = {
        "closed port": f"http://127.0.0.1:{closed_port()}",
        "wrong password": "http://guest:not-the-password@127.0.0.1:15672",
    }[management_url]
    expected = broker_counts(vhost)
    with override_settings(RABBITMQ_MANAGEMENT_URL=url):
        depths = queue_depths()
        found = scrape()

    assert [(d.name, d.kind) for d in depths] == topology_queues()
    assert {d.source for d in depths} == {"passive"}
    assert {d.name: (d.ready, d.unacked, d.consumers) for d in depths} == {
        name: (ready, None, consumers) for name, (ready, _, consumers) in expected.items()
    }
    assert found.value("fitness_queue_stats_up") == 1
    assert found.value("fitness_queue_stats_from_management_api") == 0
    assert found.value("fitness_queue_messages_ready", queue=WORK, kind="work") == expected[WORK][0]
    assert found.labelled("fitness_queue_messages_unacked") == {}


def test_a_queue_missing_from_the_broker_is_named(vhost):
    with broker_connection() as connection:
        connection.default_channel.queue_delete(OTHER_DLQ)
    try:
        with pytest.raises(QueueNotDeclared, match=rf"{OTHER_DLQ}.*setup_broker"):
            queue_depths()
        assert scrape().value("fitness_queue_stats_up") == 0
    finally:
        call_command("setup_broker", verbosity=0, stdout=open(os.devnull, "w"))
    assert [d.name for d in queue_depths()][-1] == topology.DEAD_LETTER_ARCHIVE_QUEUE
