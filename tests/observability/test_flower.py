"""Flower, started by the Procfile's own `flower` line: basic auth, the workers, the broker tab."""

from __future__ import annotations

import base64
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.deploy.test_kubernetes import procfile
from tests.observability.scrape import free_port
from tests.support import ChildProcess, wait_for

CREDENTIALS = "flower-admin:flower-test-pass"


@pytest.fixture(scope="module")
def flower(probe_worker, log_dir):
    port = free_port()
    process = ChildProcess(
        ["sh", "-c", "exec " + procfile()["flower"]], name="flower", log_dir=log_dir, ready="Visit me at",
        FLOWER_PORT=str(port), FLOWER_BASIC_AUTH=CREDENTIALS,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    ).start()
    yield f"http://127.0.0.1:{port}"
    process.stop()


def get(url: str, credentials: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if credentials:
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.parametrize("path", ["/", "/workers", "/broker", "/api/workers", "/api/queues/length"])
@pytest.mark.parametrize("credentials", [None, "flower-admin:wrong", "someone:flower-test-pass"])
def test_flower_answers_401_without_the_right_credentials(flower, path, credentials):
    status, _ = get(flower + path, credentials)
    assert status == 401


def test_flower_lists_the_running_worker(flower, probe_worker):
    def workers() -> dict:
        status, body = get(flower + "/api/workers?refresh=1", CREDENTIALS)
        assert status == 200, body
        return {name: info for name, info in json.loads(body).items() if name.startswith("probe@")}

    found = wait_for(workers, timeout=30, interval=0.5, what="Flower to list the probe worker")
    (info,) = found.values()
    assert "task.submitted" in {queue["name"] for queue in info["active_queues"]}


def test_flowers_broker_tab_reads_the_management_api(flower, probe_worker):
    def lengths() -> dict:
        get(flower + "/api/workers?refresh=1", CREDENTIALS)  # the broker tab shows the workers' queues
        status, body = get(flower + "/api/queues/length", CREDENTIALS)
        assert status == 200, body
        return {queue["name"]: queue for queue in json.loads(body)["active_queues"]}

    def with_figures() -> dict | None:
        queue = lengths().get("task.submitted") or {}
        # the management API's fields, with the probe worker among the consumers; they lag by
        # the broker's statistics interval (5 s)
        return queue if "messages_ready" in queue and queue.get("consumers", 0) >= 1 else None

    wait_for(with_figures, timeout=30, interval=0.5, what="Flower's queue lengths from the management API")

    status, page = get(flower + "/broker", CREDENTIALS)
    assert status == 200
    assert b"task.submitted" in page
