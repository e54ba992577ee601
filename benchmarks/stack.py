"""A private stack for a benchmark run: its own PostgreSQL database, RabbitMQ vhost and
media directory, removed afterwards, so a running `make run` is never disturbed.

    with BenchStack() as stack:          # in a script run from the repository root
        ...Django is set up against the private database and vhost...
        subprocess.Popen([...], env=stack.env)   # children share them

    with RabbitMQNode() as node, BenchStack("faults", node=node):   # a private broker node
        ...                                 # (tests/rabbitmq_node.py) that may be stopped
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from tests import processes

ROOT = Path(__file__).resolve().parent.parent


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


class BenchStack:
    def __init__(self, name: str, *, node=None):
        if node is None and os.environ.get("BENCH_RABBITMQ_NODE"):
            # a private node that benchmarks/verify.py started (--smoke): not the shared RabbitMQ
            from tests.rabbitmq_node import RabbitMQNode

            node = RabbitMQNode.attach(os.environ["BENCH_RABBITMQ_NODE"])
        self.run = f"{name}-{uuid.uuid4().hex[:6]}"
        self.node = node  # a tests.rabbitmq_node.RabbitMQNode instead of the shared RabbitMQ
        self.vhost = f"fitness-bench-{self.run}"
        self.media = Path(tempfile.mkdtemp(prefix=f"fitness-bench-{self.run}-"))
        broker_root = os.environ.get("BENCH_BROKER_ROOT_URL", "amqp://guest:guest@127.0.0.1:5672")
        if node is not None:
            broker_root = node.vhost_url("").rstrip("/")
        # Set before Django reads its settings, and inherited by every child process.
        broker_url = f"{broker_root}/{self.vhost}"
        if hasattr(node, "broker_url"):
            broker_url = node.broker_url(self.vhost)  # a cluster: every node's URL (Celery's failover)
        os.environ["CELERY_BROKER_URL"] = broker_url
        os.environ["DATABASE_TEST_NAME"] = f"bench_{self.run.replace('-', '_')}"
        os.environ["MEDIA_ROOT"] = str(self.media)
        # the children's metric files: not those of a running `make run` (var/metrics)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(self.media / "metrics")
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fitness.settings")
        os.environ.setdefault("LOG_LEVEL", "WARNING")
        sys.path.insert(0, str(ROOT))
        self.env: dict[str, str] = {}
        self._test_db = None
        # SIGTERM/SIGHUP end the run like Ctrl-C: `finally` blocks and __exit__ run, every
        # process started is stopped (tests/processes.py), the database and vhost are removed
        processes.handle_termination()
        self._processes_before = processes.mark()

    def __enter__(self) -> BenchStack:
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection

        print(f"setting up: database {os.environ['DATABASE_TEST_NAME']}, vhost {self.vhost}", file=sys.stderr)
        try:
            self._ctl("add_vhost", self.vhost)
            self._ctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")
            self._test_db = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
            call_command("setup_broker", verbosity=0, stdout=open(os.devnull, "w"))
        except BaseException:
            try:
                self.__exit__()  # a set-up that failed midway leaves no database, vhost or media behind
            except Exception as error:
                print(f"cleaning up after the failed set-up: {error}", file=sys.stderr)
            raise
        from tests.support import database_url

        self.env = dict(
            os.environ,
            DATABASE_URL=database_url(connection.settings_dict),
            PYTHONUNBUFFERED="1",
        )
        return self

    def _ctl(self, *args: str) -> None:
        if self.node is not None:
            self.node.ctl(*args)
        else:
            rabbitmqctl(*args)

    def __exit__(self, *exc_info) -> None:
        from django.db import connection

        from messaging.broker import close_connection

        # whatever the run started and left running (it failed midway): before the database goes;
        # not the private broker node (restarted meanwhile, perhaps), which removes the vhost
        node_process = getattr(self.node, "process", None)
        processes.stop_all(keep=self._processes_before | {node_process.pid} if node_process else self._processes_before)
        try:
            close_connection()
            connection.close()
            if self._test_db:
                connection.creation.destroy_test_db(self._test_db, verbosity=0)
        finally:
            try:
                self._ctl("delete_vhost", self.vhost)
            finally:
                shutil.rmtree(self.media, ignore_errors=True)


def celery_worker(queues: str, name: str, *, concurrency: int = 1, loglevel: str = "INFO",
                  pool: str = "prefork") -> list[str]:
    """The argv of a `celery worker` as the Procfile runs one (prefork, no gossip, no mingle)."""
    return [sys.executable, "-m", "celery", "-A", "fitness", "worker", "-Q", queues, "-n", f"{name}@%h",
            "--pool", pool, "--concurrency", str(concurrency), "--without-gossip", "--without-mingle",
            "--loglevel", loglevel]


def ai_worker(name: str, *, loglevel: str = "INFO") -> list[str]:
    """The argv of an AI worker as the Procfile's `worker-ai` runs one: ML_BATCH_MAX threads whose
    photos are read in batches (its environment: ML_PRELOAD=1, TORCH_NUM_THREADS=1)."""
    from django.conf import settings

    return celery_worker("task.submitted", name, concurrency=settings.ML_BATCH_MAX, loglevel=loglevel,
                         pool="threads")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def cpu_seconds(pids) -> dict[int, float]:
    """User + system CPU seconds each process has used so far (Linux /proc; a gone one is left out)."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return used


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two `cpu_seconds` readings: a process that started since counts
    from 0; one that exited meanwhile is lost (keep the processes measured alive)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (e.g. a gunicorn master and its workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def postgres_pids() -> list[int]:
    """Every PostgreSQL server process on this machine (backends, WAL writer, checkpointer...)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
