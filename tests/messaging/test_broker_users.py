"""Each process's RabbitMQ user (fitness/broker_users.py) does its job, and no more.

The users are created with the table's rights in a vhost of this module's own on the shared
broker (unique names, deleted at the end); the real processes then run with those
credentials: setup_broker declares the topology, a worker consumes and retries, the
archiver consumes the archive, Flower's user pings the worker, the web reads queue depths.
What a user may not do is refused by RabbitMQ with ACCESS_REFUSED.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from amqp.exceptions import AccessRefused
from kombu import Connection, Producer

from fitness import broker_users, topology
from fitness.celery import app as celery_app
from messaging.broker import publish_envelope
from messaging.events import Envelope
from tests.probe.events import ProbeFailingEvent
from tests.settings import TEST_RUN
from tests.support import ROOT, CommandProcess, WorkerProcess, subprocess_env, use_broker, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

CTL = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
MANAGEMENT = "http://127.0.0.1:15672"
# the shared broker of this machine sometimes takes many seconds to open a connection
SLOW_BROKER = "30"


def ctl(*args: str) -> None:
    subprocess.run([CTL, "-q", *args], check=True, capture_output=True, timeout=120)


class Users:
    def __init__(self, vhost: str):
        self.vhost = vhost
        self.passwords = {user.process: secrets.token_hex(12) for user in broker_users.BROKER_USERS}

    def name(self, process: str) -> str:
        return f"t{TEST_RUN}-{broker_users.broker_user(process).name}"

    def url(self, process: str) -> str:
        vhost = urllib.parse.quote(self.vhost, safe="")
        return f"amqp://{self.name(process)}:{self.passwords[process]}@127.0.0.1:5672/{vhost}"

    def connection(self, process: str) -> Connection:
        connection = Connection(self.url(process), connect_timeout=int(SLOW_BROKER))
        connection.connect()
        return connection

    def management_get(self, process: str, path: str):
        credentials = base64.b64encode(f"{self.name(process)}:{self.passwords[process]}".encode()).decode()
        request = urllib.request.Request(f"{MANAGEMENT}{path}", headers={"Authorization": f"Basic {credentials}"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=10) as response:
            return json.load(response)


@pytest.fixture(scope="module")
def users():
    vhost = f"fitness-test-{TEST_RUN}-users"
    ctl("add_vhost", vhost)
    found = Users(vhost)
    try:
        for user in broker_users.BROKER_USERS:
            name = found.name(user.process)
            ctl("add_user", name, found.passwords[user.process])
            ctl("set_user_tags", name, *user.tags)
            ctl("set_permissions", "-p", vhost, name, user.configure, user.write, user.read)
        yield found
    finally:
        for user in broker_users.BROKER_USERS:
            subprocess.run([CTL, "-q", "delete_user", found.name(user.process)], capture_output=True, timeout=120)
        subprocess.run([CTL, "-q", "delete_vhost", vhost], capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def declared(users):
    """setup_broker, run as its own user, declares the topology in the empty vhost."""
    result = subprocess.run(
        [sys.executable, "manage.py", "setup_broker"], cwd=ROOT, capture_output=True, text=True, timeout=180,
        env=subprocess_env(CELERY_BROKER_URL=users.url("setup-broker"), CELERY_BROKER_CONNECTION_TIMEOUT=SLOW_BROKER),
    )
    assert result.returncode == 0, result.stderr
    assert "RabbitMQ topology ready" in result.stdout
    return users


def refused(connection: Connection, action) -> str:
    channel = connection.channel()
    with pytest.raises(AccessRefused) as refusal:
        action(channel)
    return str(refusal.value)


def test_setup_broker_declares_the_topology_and_nothing_else(declared):
    with declared.connection("setup-broker") as connection:
        assert "ACCESS_REFUSED" in refused(connection, lambda ch: ch.queue_declare("not-in-the-topology", durable=True))
        # running it again changes nothing (its rights cover the re-declarations)
        declared_again = topology.declare_topology(connection)
    assert not declared_again.problems


def test_the_relay_publishes_and_cannot_consume_or_declare(declared):
    event = ProbeFailingEvent(label="relay", attempt_log="/dev/null")
    envelope = Envelope.wrap(event, correlation_id="users").as_message_body()
    with use_broker(declared.url("relay")):
        publish_envelope("task.submitted", envelope)  # confirmed by RabbitMQ
    with declared.connection("relay") as connection:
        assert "ACCESS_REFUSED" in refused(connection, lambda ch: ch.basic_get("task.submitted"))
        assert "ACCESS_REFUSED" in refused(connection, lambda ch: ch.queue_declare("relay-queue"))
        assert "ACCESS_REFUSED" in refused(connection, lambda ch: ch.exchange_delete(topology.EVENTS_EXCHANGE.name))
    with declared.connection("setup-broker") as connection:  # take the message out again
        connection.default_channel.queue_purge("task.submitted")


def test_the_web_reads_queue_depths_and_dead_letters_but_consumes_no_work_queue(declared, settings):
    from observability import queue_stats

    settings.CELERY_BROKER_URL = declared.url("web")
    settings.QUEUE_STATS_TIMEOUT_SECONDS = float(SLOW_BROKER)
    names = [name for name, _ in queue_stats.topology_queues()]
    # the management API answers the web's user (a 401 or 403 would raise); a queue's figures
    # appear there after the broker's first statistics round
    wait_for(lambda: set(names) <= set(queue_stats._management_stats()), timeout=90,
             what="every queue's figures in the management API")
    depths = queue_stats.queue_depths()
    assert [(depth.name, depth.source) for depth in depths] == [(name, queue_stats.SOURCE_MANAGEMENT) for name in names]
    with declared.connection("web") as connection:
        channel = connection.channel()
        assert channel.basic_get("task.submitted.dlq") is None  # the admin's replay takes dead letters
        Producer(channel).publish({}, exchange=topology.EVENTS_EXCHANGE.name, routing_key="no-such-queue")
        assert "ACCESS_REFUSED" in refused(connection, lambda ch: ch.basic_get("task.submitted"))
        assert "ACCESS_REFUSED" in refused(connection, lambda ch: ch.basic_consume("equipment.fault"))
        assert "ACCESS_REFUSED" in refused(connection, lambda ch: ch.queue_declare("web-queue"))
        assert "ACCESS_REFUSED" in refused(connection, lambda ch: ch.queue_delete("task.submitted"))


def test_keda_reads_queue_depths_over_http_only(declared):
    queue = declared.management_get("keda", f"/api/queues/{urllib.parse.quote(declared.vhost, safe='')}/mlops")
    assert queue["name"] == "mlops"
    with declared.connection("keda") as connection:
        assert "ACCESS_REFUSED" in refused(connection, lambda ch: ch.basic_get("mlops"))
        assert "ACCESS_REFUSED" in refused(connection, lambda ch: ch.queue_declare("keda-queue"))


def test_a_worker_consumes_and_retries_with_its_user_and_the_archiver_takes_the_dead_letter(
        declared, route_events, log_dir, tmp_path: Path, monkeypatch):
    from messaging.models import DeadLetter

    monkeypatch.setitem(celery_app.conf, "broker_connection_timeout", int(SLOW_BROKER))

    worker = WorkerProcess(["task.submitted"], name=f"users-ai-{TEST_RUN}", log_dir=log_dir,
                           CELERY_BROKER_URL=declared.url("worker-ai"), TORCH_NUM_THREADS="1",
                           CELERY_BROKER_CONNECTION_TIMEOUT=SLOW_BROKER).start(timeout=120)
    archiver = CommandProcess("archive_dead_letters", name="users-archiver", log_dir=log_dir,
                              ready="dead-letter archiver consuming",
                              CELERY_BROKER_URL=declared.url("dead-letters"),
                              CELERY_BROKER_CONNECTION_TIMEOUT=SLOW_BROKER).start(timeout=120)
    try:
        # Flower's user reaches the worker through Celery's remote control
        with use_broker(declared.url("flower")):
            replies = celery_app.control.ping(timeout=10.0)
        assert any(worker.argv[worker.argv.index("-n") + 1].split("@")[0] in name for reply in replies
                   for name in reply), replies
        attempts = tmp_path / "attempts.log"
        event = ProbeFailingEvent(label="users", attempt_log=str(attempts))
        envelope = Envelope.wrap(event, correlation_id="users").as_message_body()
        with use_broker(declared.url("relay")):
            publish_envelope("task.submitted", envelope)
        # 1 attempt and 3 retries (native delayed delivery), then the .dlq and the archive
        row = wait_for(lambda: DeadLetter.objects.filter(event_id=envelope["event_id"]).first(), timeout=60,
                       what="the dead letter archived")
        assert len(attempts.read_text().split()) == 4
        assert row.queue == "task.submitted"
        # the worker may not read another pool's queue
        with declared.connection("worker-ai") as connection:
            assert "ACCESS_REFUSED" in refused(connection, lambda ch: ch.basic_get("equipment.fault"))
            assert "ACCESS_REFUSED" in refused(connection, lambda ch: ch.queue_declare("task.submitted.dlq",
                                                                                          passive=False))
    finally:
        archiver.stop()
        worker.stop()
    assert "ACCESS_REFUSED" not in worker.log() + archiver.log()


def test_the_archiver_reads_only_the_archive(declared):
    with declared.connection("dead-letters") as connection:
        assert "ACCESS_REFUSED" in refused(connection, lambda ch: ch.basic_get("task.submitted.dlq"))
        assert "ACCESS_REFUSED" in refused(connection, lambda ch: ch.basic_get("mlops"))


def test_beat_publishes_a_scheduled_job(declared):
    with declared.connection("beat") as connection:
        celery_app.send_task("ml.retrain", connection=connection, queue=celery_app.amqp.queues["mlops"])
    with declared.connection("setup-broker") as connection:
        message = connection.default_channel.basic_get("mlops", no_ack=True)
    assert message is not None and message.headers["task"] == "ml.retrain"


def test_every_right_is_an_anchored_regular_expression():
    # every regular expression is anchored: a right on `mlops` is not one on `mlops-anything`
    for user in broker_users.BROKER_USERS:
        for pattern in user.permissions().values():
            assert pattern == broker_users.NOTHING or (pattern.startswith("^(") and pattern.endswith(")$")), user
