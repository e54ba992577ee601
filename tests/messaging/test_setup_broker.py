"""setup_broker: the topology of fitness/topology.py, declared idempotently."""

import json
import shutil
import subprocess

import pytest
from django.core.management import CommandError, call_command

from fitness import topology

pytestmark = pytest.mark.django_db


def list_queues(vhost: str) -> dict[str, dict]:
    out = subprocess.run(
        [shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl", "list_queues", "-p", vhost, "--formatter", "json",
         "name", "type", "durable", "arguments", "messages"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout
    queues = {queue["name"]: queue for queue in json.loads(out)}
    for queue in queues.values():  # rabbitmqctl lists arguments as [name, type, value]
        queue["arguments"] = {name: value for name, _type, value in queue["arguments"]}
    return queues


def test_running_setup_broker_again_changes_nothing(broker_vhost, capsys):
    before = list_queues(broker_vhost)

    call_command("setup_broker")

    assert "RabbitMQ topology ready" in capsys.readouterr().out
    after = list_queues(broker_vhost)
    assert {n: (q["type"], q["arguments"]) for n, q in after.items()} == {
        n: (q["type"], q["arguments"]) for n, q in before.items()
    }


def test_work_queues_are_quorum_queues_with_delivery_limit_and_at_least_once_dead_lettering(broker_vhost):
    queues = list_queues(broker_vhost)

    for work in topology.WORK_QUEUES:
        declared = queues[work.name]
        assert declared["type"] == "quorum" and declared["durable"] is True
        assert declared["arguments"] == {
            "x-queue-type": "quorum",
            "x-delivery-limit": 5,
            "x-dead-letter-exchange": "fitness.dead-letter",
            "x-dead-letter-routing-key": work.name,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
        dead_letters = queues[f"{work.name}.dlq"]
        assert dead_letters["type"] == "quorum" and dead_letters["durable"] is True


def test_there_is_no_celery_queue_and_no_durable_classic_queue(broker_vhost, probe_worker):
    queues = list_queues(broker_vhost)

    assert "celery" not in queues
    # Only Celery's own transient queues (remote control replies, events) are classic.
    durable_classic = [n for n, q in queues.items() if q["type"] == "classic" and q["durable"]]
    assert durable_classic == []
    assert set(topology.queue_names()) | set(topology.dead_letter_queue_names()) <= set(queues)


def test_setup_broker_says_in_one_line_when_rabbitmq_is_unreachable(broker_url):
    broker_url("amqp://guest:guest@127.0.0.1:1//")

    with pytest.raises(CommandError, match=r"cannot set up RabbitMQ at amqp://guest:\*\*@127.0.0.1:1//"):
        call_command("setup_broker")


def test_dry_run_lists_the_topology_without_connecting(broker_url, capsys):
    broker_url("amqp://guest:guest@127.0.0.1:1//")

    call_command("setup_broker", "--dry-run")

    out = capsys.readouterr().out
    for name in topology.queue_names():
        assert f"queue {name}" in out


def test_every_dead_letter_is_also_routed_to_the_archive_queue(broker_vhost):
    out = subprocess.run(
        [shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl", "list_bindings", "-p", broker_vhost, "--formatter",
         "json", "source_name", "destination_name", "routing_key"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout
    bindings = {(b["source_name"], b["destination_name"], b["routing_key"]) for b in json.loads(out)}

    assert list_queues(broker_vhost)[topology.DEAD_LETTER_ARCHIVE_QUEUE]["type"] == "quorum"
    for work in topology.WORK_QUEUES:
        assert ("fitness.dead-letter", f"{work.name}.dlq", work.name) in bindings
        assert ("fitness.dead-letter", topology.DEAD_LETTER_ARCHIVE_QUEUE, work.name) in bindings
