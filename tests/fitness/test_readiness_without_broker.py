"""With RabbitMQ down the web stays in service: the outbox keeps accepting work.

The web runs as the Procfile runs it (gunicorn, this directory's gunicorn.conf.py) with
CELERY_BROKER_URL pointing at a closed port. Readiness depends on PostgreSQL alone; the
broker's state is reported in /readyz's body and in /metrics. An upload is accepted (202)
and the relay publishes it once RabbitMQ is reachable again.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
import uuid

import pytest

from messaging.models import OutboxMessage
from tests import factories
from tests.observability.scrape import Scrape, closed_port, free_port
from tests.support import ROOT, ChildProcess, drain_queue, own_vhost, subprocess_env, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def gunicorn(log_dir, **env: str) -> ChildProcess:
    port = free_port()
    web = ChildProcess(
        [sys.executable, "-m", "gunicorn", "fitness.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1",
         "--graceful-timeout", "5"],
        name=f"web-{port}", log_dir=log_dir, ready="Booting worker", **env,
    )
    web.url = f"http://127.0.0.1:{port}"
    return web


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def answering(url: str):
    try:
        return get(url)
    except OSError:
        return None


def post_photo(url: str, token: str) -> tuple[int, dict]:
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"laundry.jpg\"\r\n"
        f"Content-Type: image/jpeg\r\n\r\n"
    ).encode() + factories.photo_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}", "Authorization": f"Token {token}",
    })
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.fixture
def vhost(broker_vhost):
    with own_vhost("readiness") as url:
        yield url


def test_with_rabbitmq_down_readyz_is_200_and_an_upload_is_accepted_then_published(vhost, log_dir):
    helper = factories.helper()
    token = factories.api_token(helper)
    drain_queue("task.submitted")
    web = gunicorn(log_dir, CELERY_BROKER_URL=f"amqp://guest:guest@127.0.0.1:{closed_port()}//").start()
    try:
        status, body = wait_for(lambda: answering(f"{web.url}/readyz"), timeout=60, what="gunicorn to answer")
        readiness = json.loads(body)
        assert status == 200, readiness
        assert readiness["status"] == "ready" and readiness["failing"] == []
        assert readiness["checks"]["postgresql"] == "ok"
        assert readiness["checks"]["rabbitmq"].startswith("unreachable:"), readiness

        status, metrics = get(f"{web.url}/metrics")
        assert status == 200
        assert Scrape(metrics.decode()).value("fitness_broker_up") == 0

        status, task = post_photo(f"{web.url}/api/v1/tasks/", token)
        assert status == 202, task
    finally:
        web.stop()

    (message,) = OutboxMessage.objects.all()
    assert message.published_at is None and message.envelope["payload"]["task_id"] == task["id"]
    relay = subprocess.run([sys.executable, "manage.py", "relay_outbox", "--once"], cwd=ROOT,
                           env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert relay.returncode == 0, relay.stderr
    assert "published 1 event(s)" in relay.stdout
    message.refresh_from_db()
    assert message.published_at is not None
    (delivered,) = drain_queue("task.submitted")
    assert delivered.headers["event_id"] == str(message.event_id)


def test_readyz_is_503_when_postgresql_is_unreachable(log_dir):
    web = gunicorn(log_dir, DATABASE_URL=f"postgres://fitness:fitness@127.0.0.1:{closed_port()}/fitness").start()
    try:
        status, body = wait_for(lambda: answering(f"{web.url}/readyz"), timeout=60, what="gunicorn to answer")
    finally:
        web.stop()
    readiness = json.loads(body)
    assert status == 503, readiness
    assert (readiness["status"], readiness["failing"]) == ("unavailable", ["postgresql"])
    assert readiness["checks"]["postgresql"].startswith("unavailable:")
    assert readiness["checks"]["rabbitmq"] == "ok"
