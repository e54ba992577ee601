"""setup_broker: the topology of fitness/topology.py, declared idempotently."""

import json
import shutil
import subprocess

import pytest
from django.core.management import CommandError, call_command

from fitness import topology
from tests.support import wait_for

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


def test_each_subscriber_queue_is_bound_with_its_event_types_and_its_own_name(broker_vhost):
    out = subprocess.run(
        [shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl", "list_bindings", "-p", broker_vhost, "--formatter",
         "json", "source_name", "destination_name", "routing_key"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout
    bindings = {(b["source_name"], b["destination_name"], b["routing_key"]) for b in json.loads(out)}
    to_events = {(queue, key) for source, queue, key in bindings if source == "fitness.events"}

    for work in topology.WORK_QUEUES:
        for event_type in work.events:
            assert (work.name, event_type) in to_events
        # its own name (retries, replays) through the delayed-delivery pattern, which matches it exactly
        assert (work.name, f"#.{work.name}") in to_events
    audited = {key for queue, key in to_events
               if queue == topology.AUDIT_QUEUE and not key.startswith("#") and key != topology.AUDIT_QUEUE}
    assert audited == set(topology.EVENT_TYPES)
    # an event type's key reaches its subscribers only, never a queue through its own-name binding
    assert {queue for queue, key in to_events if key == "TaskSubmittedEvent"} == {"task.submitted", "audit"}


def test_dead_letter_and_archive_queues_have_no_delivery_limit_on_either_major_version(broker_vhost):
    # 3.x: none unless given (and -1 would mean "drop on the first return"); 4.x: -1 says none
    assert topology.holding_queue_arguments(3) == {"x-queue-type": "quorum"}
    assert topology.holding_queue_arguments(4) == {"x-queue-type": "quorum", "x-delivery-limit": -1}
    queues = list_queues(broker_vhost)  # this broker is 3.10
    for name in [*topology.dead_letter_queue_names(), topology.DEAD_LETTER_ARCHIVE_QUEUE]:
        assert queues[name]["arguments"] == {"x-queue-type": "quorum"}, name


def test_after_an_upgrade_to_rabbitmq_4_setup_broker_reports_old_dead_letter_queues_and_recreates_empty_ones(
    monkeypatch, capsys
):
    from tests.support import broker_connection, own_vhost, queue_depth

    with own_vhost("upgrade") as url:
        vhost = url.rsplit("/", 1)[1]
        with broker_connection() as connection:
            connection.ensure_connection(max_retries=10)  # a new vhost can be slow to answer
            channel = connection.default_channel
            channel.basic_publish(channel.prepare_message(b"kept"), exchange="", routing_key="equipment.fault.dlq")
        capsys.readouterr()
        # RabbitMQ is now 4.x: the queues the 3.x set-up declared lack the explicit unlimited limit
        monkeypatch.setattr(topology, "broker_major_version", lambda connection: 4)
        holding = [*topology.dead_letter_queue_names(), topology.DEAD_LETTER_ARCHIVE_QUEUE]

        call_command("setup_broker")  # no crash: every old queue kept, reported in one line each

        captured = capsys.readouterr()
        assert "RabbitMQ topology ready" in captured.out
        assert f"({len(holding)} not up to date, see above)" in captured.out
        problems = [line for line in captured.err.splitlines() if "not up to date" in line]
        assert len(problems) == len(holding) and all("drops a dead letter returned 20 times" in p for p in problems)
        assert any("equipment.fault.dlq" in p and "holds 1 message(s): replay or purge them" in p for p in problems)

        call_command("setup_broker", "--recreate-outdated")

        captured = capsys.readouterr()
        assert "queue task.submitted.dlq (quorum, no delivery limit, dead letters of task.submitted; recreated" \
            in captured.out
        (problem,) = [line for line in captured.err.splitlines() if "not up to date" in line]
        assert "equipment.fault.dlq" in problem
        queues = list_queues(vhost)
        for name in holding:
            old = name == "equipment.fault.dlq"
            assert queues[name]["arguments"] == topology.holding_queue_arguments(3 if old else 4), name
        assert queue_depth("equipment.fault.dlq") == 1  # kept, and still bound:
        with broker_connection() as connection:
            connection.ensure_connection(max_retries=10)  # a new vhost can be slow to answer
            channel = connection.default_channel
            channel.basic_publish(channel.prepare_message(b"routed"), exchange="fitness.dead-letter",
                                  routing_key="equipment.fault")
        wait_for(lambda: queue_depth("equipment.fault.dlq") == 2 and queue_depth("dead-letters.archive") == 1,
                 what="a dead letter routed to the kept .dlq and the new archive queue")
