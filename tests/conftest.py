"""Fixtures shared by the whole suite: a private RabbitMQ vhost and real workers.

PostgreSQL: pytest-django creates `test_fitness_<run>` (tests/settings.py names it) and
drops it at the end. RabbitMQ: the session creates the vhost `fitness-test-<run>`, runs
`setup_broker` in it, and deletes it at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from fitness.celery import app as celery_app
from messaging import broker
from tests import processes
from tests.support import ROOT, WebProcess, WorkerProcess, collect_static, outbox_relay

LOG_DIR = ROOT / "var" / "test-logs"


def pytest_configure(config):
    # SIGTERM/SIGHUP (a CI job cancelled, `kill`) end the run as Ctrl-C does: the fixtures
    # tear down, and whatever worker, relay or broker node is left is stopped at exit
    # (tests/processes.py); the default action would orphan them all.
    processes.handle_termination(KeyboardInterrupt, signals=(signal.SIGTERM, signal.SIGHUP))


def _rabbitmqctl(*args: str) -> None:
    executable = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    result = subprocess.run([executable, *args], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")


@pytest.fixture(scope="session", autouse=True)
def broker_vhost():
    """A RabbitMQ virtual host of this run's own, with the topology declared in it."""
    from tests.settings import TEST_VHOST

    _rabbitmqctl("add_vhost", TEST_VHOST)
    _rabbitmqctl("set_permissions", "-p", TEST_VHOST, "guest", ".*", ".*", ".*")
    call_command("setup_broker", verbosity=0, stdout=open("/dev/null", "w"))
    yield TEST_VHOST
    broker.close_connection()
    _rabbitmqctl("delete_vhost", TEST_VHOST)


@pytest.fixture(scope="session", autouse=True)
def media_root():
    """This run's photos and model artifacts, removed at the end (and its metric files)."""
    yield Path(settings.MEDIA_ROOT)
    shutil.rmtree(settings.MEDIA_ROOT, ignore_errors=True)
    shutil.rmtree(settings.PROMETHEUS_MULTIPROC_DIR, ignore_errors=True)
    shutil.rmtree(settings.STATIC_ROOT, ignore_errors=True)


@pytest.fixture(scope="session")
def log_dir() -> Path:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    return LOG_DIR


@pytest.fixture(scope="session")
def probe_worker(django_db_setup, django_db_blocker, broker_vhost, log_dir):
    """A real Celery worker (prefork, 2 processes) consuming `task.submitted`.

    It runs every consumer of that queue: the AI reading and the probe events. Its log is
    JSON lines whatever this run's LOG_FORMAT (tests/fitness/test_logging.py reads them).
    """
    worker = WorkerProcess(
        ["task.submitted"], name="probe", concurrency=2, log_dir=log_dir, TORCH_NUM_THREADS="1", LOG_FORMAT="json"
    ).start()
    yield worker
    worker.stop()


class _Relay:
    """The session's relay process, started when a test asks for `relay`, for the broker that test uses."""

    current: _Relay | None = None

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.process = None
        self.url = None

    def running(self):
        url = celery_app.conf.broker_url  # the session's vhost, or the private node a test switched to
        if self.process is None or self.url != url:
            self.stop()
            self.process = outbox_relay(self.log_dir, "relay-session").start(timeout=120)
            self.url = url
        return self.process

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        self.process = self.url = None


@pytest.fixture(scope="session")
def _session_relay(django_db_setup, broker_vhost, log_dir):
    _Relay.current = _Relay(log_dir)
    yield _Relay.current
    _Relay.current.stop()
    _Relay.current = None


@pytest.fixture(autouse=True)
def _relay_only_where_asked(request):
    """A test that does not ask for `relay` runs with none: its committed rows stay in the outbox."""
    if _Relay.current is not None and "relay" not in request.fixturenames:
        _Relay.current.stop()


@pytest.fixture
def relay(_session_relay):
    """A running `manage.py relay_outbox` (the only publisher of outbox events) for this test.

    It publishes to the broker this test publishes to when it starts: ask for it after a
    fixture that switches broker (`private_broker`). Kept running across the tests that ask
    for it, stopped before one that does not.
    """
    return _session_relay.running()


@pytest.fixture(scope="session")
def static_root() -> Path:
    """This run's collectstatic with the product's storage (what `make setup` writes to var/static)."""
    return collect_static(Path(settings.STATIC_ROOT))


@pytest.fixture(scope="session")
def web(django_db_setup, broker_vhost, static_root, log_dir):
    """The Procfile's web process (gunicorn, 2 workers) on this run's database and vhost.

    Its requests see committed rows only: tests that use it need `transactional_db`. It logs
    plain lines, as under `make run` (tests/fitness/test_web_process.py reads them).
    """
    process = WebProcess(static_root=static_root, log_dir=log_dir, LOG_FORMAT="plain").start()
    yield process
    process.stop()


@pytest.fixture
def broker_url():
    """Point publishing at another broker URL for one test, e.g. a closed port."""
    original = celery_app.conf.broker_url

    def use(url: str) -> None:
        broker.close_connection()
        # Celery prefers the environment variable over its configuration
        os.environ["CELERY_BROKER_URL"] = url
        celery_app.conf.broker_url = url
        settings.CELERY_BROKER_URL = url

    yield use
    use(original)


@pytest.fixture
def route_events(monkeypatch):
    """Publish events straight to one work queue for one test (the probe events to
    task.submitted): with that queue's name for routing key instead of the event type."""
    from fitness import topology

    def route(event_type: str, queue: str) -> None:
        monkeypatch.setitem(topology.ROUTING_KEY_OVERRIDES, event_type, queue)

    route("ProbeRecordedEvent", "task.submitted")
    route("ProbeFailingEvent", "task.submitted")
    return route
