"""Helpers for tests that drive real processes: Celery workers, relays, RabbitMQ queues."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings
from kombu import Connection

from fitness.celery import app as celery_app
from tests import processes
from tests.rabbitmq_node import RabbitMQNode, available, free_port

ROOT = Path(__file__).resolve().parent.parent


def wait_for(predicate: Callable[[], object], *, timeout: float = 30.0, interval: float = 0.1, what: str = ""):
    """Poll `predicate` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


def refuse_the_uploads_event_row(monkeypatch) -> list[tuple[str, bool]]:
    """Make the outbox row of every upload from now on one the database refuses (event_type
    NULL), inside the task's own statement, so that the task's INSERT fails with it. Returns
    the list of (photo name, whether the storage held the photo then) of each refused row."""
    from django.core.files.storage import default_storage

    from messaging.outbox import event_row_cte

    refused: list[tuple[str, bool]] = []

    def unstorable_event(*args, **kwargs):
        row = event_row_cte(*args, **kwargs)
        photo = row.message.envelope["payload"]["photo"]
        refused.append((photo, default_storage.exists(photo)))
        row.params[1] = None  # event_type, NOT NULL (the order of _outbox_message's parameters)
        return row

    monkeypatch.setattr("tasks.services.event_row_cte", unstorable_event)
    return refused


def statement_sql(logged: str) -> str:
    """The SQL a query log entry ran: for a prepared statement (fitness.db's execute_prepared),
    the statement behind its EXECUTE rather than the EXECUTE."""
    import re

    from django.db import connection

    executed = re.search(r'(?:^|; )EXECUTE "(\w+)"', logged)
    return connection.prepared_statements[executed.group(1)] if executed else logged


def database_url(db: dict) -> str:
    """The DATABASE_URL of a Django database settings dict (for child processes)."""
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def subprocess_env(**extra: str | None) -> dict[str, str]:
    """The environment for a child process that shares this run's database and vhost.

    `extra` adds variables; None removes one."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DATABASE_URL=database_url(settings.DATABASES["default"]),
        CELERY_BROKER_URL=celery_app.conf.broker_url,
        PYTHONUNBUFFERED="1",
        # its counters land where this run's GET /metrics sums them
        PROMETHEUS_MULTIPROC_DIR=settings.PROMETHEUS_MULTIPROC_DIR,
    )
    env.update({name: value for name, value in extra.items() if value is not None})
    for name in [name for name, value in extra.items() if value is None]:
        env.pop(name, None)
    return env


class ChildProcess:
    """A long-running subprocess of this test run (same database and vhost), logging to a file.

    `start` waits until `ready` appears in its log; `stop` sends SIGTERM (a warm shutdown)
    and `kill` kill -9s the whole process group. It runs in a process group of its own
    (tests/processes.py), stopped when this process exits at the latest.

    Its readiness line is an INFO line, so it logs at INFO unless `LOG_LEVEL` is passed:
    the parent's LOG_LEVEL (benchmarks/stack.py sets WARNING) would otherwise hide it.
    """

    def __init__(self, argv: list[str], *, name: str, log_dir: Path, ready: str, **env: str | None):
        self.argv = argv
        self.name = name
        self.ready = ready.encode()
        self.env = {"LOG_LEVEL": "INFO", **env}
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0):
        """`launch` it and `wait_ready`."""
        return self.launch().wait_ready(timeout)

    def launch(self):
        """Start it without waiting (several can load at once); then `wait_ready`."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self._offset = self.log_path.stat().st_size
        self.process = processes.spawn(
            self.argv, cwd=ROOT, env=subprocess_env(**self.env), stdout=self._log, stderr=subprocess.STDOUT,
        )
        return self

    def wait_ready(self, timeout: float = 60.0):
        try:
            wait_for(self._ready, timeout=timeout, what=f"{self.name} to be ready ({self.log_path})")
        except BaseException:
            self.kill()  # never left running by a start that failed
            raise
        return self

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.log()}")
        return self.ready in self.log_path.read_bytes()[self._offset:]

    def log(self) -> str:
        return self.log_path.read_bytes()[self._offset:].decode(errors="replace")

    def stop(self, timeout: float = 30.0) -> None:
        """Warm shutdown (SIGTERM): running work finishes, nothing is lost."""
        if self.process:
            processes.terminate(self.process, timeout)  # then SIGKILL to what is left of its group
        self._close()

    def kill(self) -> None:
        """kill -9 the whole process group (a worker's main process and its pool children)."""
        if self.process:
            processes.kill(self.process)
        self._close()

    def _close(self) -> None:
        log = getattr(self, "_log", None)
        if log and not log.closed:
            log.close()


class WorkerProcess(ChildProcess):
    """A real `celery worker` subprocess consuming some queues of the test vhost."""

    def __init__(self, queues: list[str], *, name: str, concurrency: int = 1, pool: str = "prefork", log_dir: Path,
                 app: str = "fitness", **env: str | None):
        self.queues = queues
        self.concurrency = concurrency
        super().__init__(
            [
                sys.executable, "-m", "celery", "-A", app, "worker",
                "-Q", ",".join(queues), "-n", f"{name}@%h",
                "--concurrency", str(concurrency), "--pool", pool,
                "--without-gossip", "--without-mingle", "--loglevel", "INFO",
            ],
            name=f"worker-{name}", log_dir=log_dir, ready=" ready.", **env,
        )


def broker_connection() -> Connection:
    return celery_app.connection_for_write()


def queue_depth(name: str) -> int:
    """Messages ready in a queue (passive declare: never creates it)."""
    with broker_connection() as conn:
        _, count, _ = conn.default_channel.queue_declare(name, passive=True)
        return count


def drain_queue(name: str) -> list:
    """Take every ready message out of a queue (acked), returning the kombu messages."""
    messages = []
    with broker_connection() as conn:
        channel = conn.default_channel
        while True:
            message = channel.basic_get(name, no_ack=False)
            if message is None:
                return messages
            channel.basic_ack(message.delivery_tag)
            messages.append(message)


@contextmanager
def use_broker(url: str):
    """Point this process's publishing (and the children it starts) at another broker URL."""
    from messaging import broker

    original = celery_app.conf.broker_url

    def switch(to: str) -> None:
        broker.close_connection()
        os.environ["CELERY_BROKER_URL"] = to  # Celery prefers it over its configuration
        celery_app.conf.broker_url = to
        settings.CELERY_BROKER_URL = to
        # Celery's own pools keep connections to the old URL: a job sent with `apply_async`
        # (ml.retrain) would still go to the old vhost and its workers
        if celery_app._pool is not None:
            celery_app._pool.force_close_all()
            celery_app._pool = None
        celery_app.amqp._producer_pool = None

    switch(url)
    try:
        yield url
    finally:
        switch(original)


class CommandProcess(ChildProcess):
    """A long-running `manage.py` command (the relay, the dead-letter archiver) as a subprocess."""

    def __init__(self, *args: str, name: str, log_dir: Path, ready: str, **env: str | None):
        self.args = args
        super().__init__([sys.executable, "manage.py", *args], name=name, log_dir=log_dir, ready=ready, **env)


def outbox_relay(log_dir: Path, name: str = "relay", *args: str, **env: str | None) -> CommandProcess:
    """`manage.py relay_outbox` (the Procfile's relay), scanning every second unless `args` say otherwise.

    The only publisher of outbox events: a test that expects an event to reach a queue after
    `publish_event` commits needs one running (the `relay` fixture, or its own).
    """
    args = args or ("--interval", "1")
    # the shared broker is slow to open a connection at times (vhosts come and go): wait, not back off
    env = {"CELERY_BROKER_CONNECTION_TIMEOUT": "30", **env}
    return CommandProcess("relay_outbox", *args, name=name, log_dir=log_dir, ready="outbox relay started", **env)


def dead_letter_archiver(log_dir: Path, name: str = "archiver") -> CommandProcess:
    return CommandProcess(
        "archive_dead_letters", name=name, log_dir=log_dir, ready="dead-letter archiver consuming"
    )


@contextmanager
def own_vhost(suffix: str):
    """A RabbitMQ vhost of its own on the shared broker, with the topology, in use meanwhile.

    For tests that count what is in a queue: the session's vhost is shared by every test
    (and its worker), this one only by the tests of one module.
    """
    from django.core.management import call_command

    from tests.settings import BROKER_ROOT_URL, TEST_VHOST

    vhost = f"{TEST_VHOST}-{suffix}"
    ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    for args in (["add_vhost", vhost], ["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"]):
        subprocess.run([ctl, "-q", *args], check=True, capture_output=True, timeout=120)
    try:
        with use_broker(f"{BROKER_ROOT_URL}/{vhost}") as url:
            call_command("setup_broker", verbosity=0, stdout=open(os.devnull, "w"))
            yield url
    finally:
        subprocess.run([ctl, "-q", "delete_vhost", vhost], capture_output=True, timeout=120)


def procfile_command(process: str) -> str:
    """The Procfile's command line of `process` (honcho runs it with a shell, so do the tests)."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name == process and not line.startswith("#"):
            return command.strip()
    raise LookupError(f"the Procfile has no {process}: line")


def collect_static(static_root: Path) -> Path:
    """`manage.py collectstatic` with the product's storage (hashed, compressed) into `static_root`."""
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--clear", "-v", "0"], cwd=ROOT, check=True,
        env=subprocess_env(TEST_STATIC_STORAGE="production", STATIC_ROOT=str(static_root)), timeout=300,
    )
    return static_root


class WebProcess(ChildProcess):
    """The Procfile's `web` process (gunicorn, with gunicorn.conf.py) on a free port of this run.

    Started as honcho starts it (`bash -c` of the Procfile's line, PORT and WEB_CONCURRENCY
    set), with the product's static file storage on `static_root` (see `collect_static`).
    Ready when a worker has logged "Worker ready" (gunicorn.conf.py).
    """

    def __init__(self, *, static_root: Path, name: str = "web", workers: int = 2, log_dir: Path,
                 **env: str | None):
        self.port = free_port()
        super().__init__(
            ["bash", "-c", f"exec {procfile_command('web')}"], name=name, log_dir=log_dir, ready="Worker ready",
            PORT=str(self.port), WEB_CONCURRENCY=str(workers), TEST_STATIC_STORAGE="production",
            STATIC_ROOT=str(static_root),
            # as under `make run`: the virtualenv's gunicorn first on PATH
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", **env,
        )

    def start(self, timeout: float = 120.0):
        return super().start(timeout)  # gunicorn loads and warms the app before it forks

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def private_rabbitmq_node(purpose: str) -> Iterator[RabbitMQNode]:
    """A started RabbitMQ node of the caller's own (tests/rabbitmq_node.py), for a fixture.

    Skips the tests when none can start here; removed whatever happens, also when it fails to
    start. For tests that stop the broker, or that count exactly what reaches each queue.
    """
    reason = available()
    if reason:
        pytest.skip(f"{purpose} need a private RabbitMQ node: {reason}")
    node = RabbitMQNode()
    try:
        node.start()
        yield node
    finally:
        node.cleanup()
