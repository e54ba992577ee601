"""Flower's broker tab and `/api/queues/length` list every queue of the topology, with lengths.

The real stack, as `make run` starts it: every worker pool from its Procfile line and Flower
from its own, with basic auth and `--broker_api` to the local management API, in a vhost of
this module's own. Flower starts while only one pool is up and the other pools come up after
it, the order honcho's parallel start produced when Flower listed 2 of the 5 work queues: the
broker tab took its queue names only from the workers that answered Flower's one inspect
broadcast at its start.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from kombu import Producer

from fitness import topology
from fitness.celery import app as celery_app
from tests.deploy.test_kubernetes import procfile
from tests.observability.scrape import free_port
from tests.support import ChildProcess, broker_connection, own_vhost, wait_for

CREDENTIALS = "flower-ops:flower-queues-pass"
POOLS = ["worker-ai", "worker-mlops", "worker-alerts", "worker-notify"]
FIRST_POOL = "worker-notify"  # the one pool up before Flower
# Five processes start in this module's fixture, torch among them, on a machine shared with others.
pytestmark = pytest.mark.timeout(900)
PATH = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def procfile_process(name: str, log_dir: Path, ready: str, **env: str) -> ChildProcess:
    return ChildProcess(["sh", "-c", "exec env " + procfile()[name]], name=f"flower-queues-{name}", log_dir=log_dir,
                        ready=ready, PATH=PATH, **env)


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker, log_dir):
    """Every pool of the Procfile and Flower, in a vhost of their own: Flower's URL."""
    started: list[ChildProcess] = []
    with own_vhost("flower"):
        try:
            def start(process: ChildProcess, timeout: float = 180.0) -> None:
                started.append(process)
                process.start(timeout=timeout)

            start(procfile_process(FIRST_POOL, log_dir, " ready.", TORCH_NUM_THREADS="1"))
            port = free_port()
            start(procfile_process("flower", log_dir, "Visit me at", FLOWER_PORT=str(port),
                                   FLOWER_BASIC_AUTH=CREDENTIALS))
            for pool in POOLS:
                if pool != FIRST_POOL:
                    start(procfile_process(pool, log_dir, " ready.", TORCH_NUM_THREADS="1"))
            yield f"http://127.0.0.1:{port}"
        finally:
            for process in reversed(started):
                process.stop()


def get(url: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    request.add_header("Authorization", "Basic " + base64.b64encode(CREDENTIALS.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def queue_lengths(flower: str) -> dict[str, dict]:
    status, body = get(flower + "/api/queues/length")  # never ?refresh: what an operator's page sees
    assert status == 200, body
    return {queue["name"]: queue for queue in json.loads(body)["active_queues"]}


def test_every_work_queue_is_listed_with_its_length_once_the_workers_are_up(stack):
    seen: list[list[str]] = [[]]

    def all_listed() -> dict | None:
        queues = queue_lengths(stack)
        seen[0] = sorted(queues)
        # the management API's figures: they appear after the broker's statistics round (5 s)
        listed = {name: queues[name] for name in topology.queue_names()
                  if name in queues and "messages" in queues[name]}
        return listed if len(listed) == len(topology.WORK_QUEUES) else None

    try:
        listed = wait_for(all_listed, timeout=90, interval=1, what="Flower to list every work queue with its length")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; it listed {seen[0]}") from None
    assert all(queue["messages"] == 0 for queue in listed.values()), listed

    status, page = get(stack + "/broker")
    assert status == 200
    for name in topology.queue_names():
        assert f"<td>{name}</td>".encode() in page, name


def test_a_queue_nobody_consumes_shows_the_messages_waiting_in_it(stack):
    """An operator stops the mlops pool consuming `mlops` (Celery's cancel_consumer): Flower
    still lists the queue, and shows the 3 messages that then wait in it."""
    with broker_connection() as connection:
        replies = celery_app.control.cancel_consumer("mlops", connection=connection, reply=True, timeout=10)
    assert any("ok" in reply for answer in replies for reply in answer.values()), replies
    try:
        with broker_connection() as connection:
            producer = Producer(connection.default_channel, exchange=topology.EVENTS_EXCHANGE, auto_declare=False)
            for number in range(3):
                producer.publish({"probe": number}, routing_key="mlops", delivery_mode=2)

        def three_waiting() -> dict | None:
            queue = queue_lengths(stack).get("mlops") or {}
            return queue if queue.get("messages") == 3 and queue.get("messages_ready") == 3 else None

        queue = wait_for(three_waiting, timeout=60, interval=1, what="Flower to show 3 messages in mlops")
        assert queue["consumers"] == 0

        status, page = get(stack + "/broker")
        assert status == 200
        assert b"<td>mlops</td>" in page
    finally:
        with broker_connection() as connection:
            connection.default_channel.queue_purge("mlops")
            celery_app.control.add_consumer("mlops", connection=connection, reply=True, timeout=10)


def test_flower_refuses_to_start_without_authentication():
    import subprocess

    from tests.support import ROOT, subprocess_env

    result = subprocess.run(
        [sys.executable, "-m", "observability.flower", f"--port={free_port()}"], cwd=ROOT, capture_output=True,
        text=True, timeout=120, env=subprocess_env(FLOWER_BASIC_AUTH=None, FLOWER_AUTH=None),
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "flower: no authentication: set FLOWER_BASIC_AUTH=user:password (or pass --basic-auth)"
    )
