"""The helpers that start real processes (tests/support.py, tests/processes.py, benchmarks/).

A child is ready when its readiness line appears in its log, whatever the parent's log
level; and nothing a helper started outlives the process that started it, however that
process ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support import ROOT, CommandProcess, wait_for


@pytest.mark.django_db(transaction=True)
def test_a_relay_is_seen_ready_when_the_parent_logs_only_warnings(monkeypatch, log_dir):
    # benchmarks/stack.py sets LOG_LEVEL=WARNING for the benchmark's own process, and
    # children inherit the environment: the relay's INFO "started" line was never written
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    relay = CommandProcess(
        "relay_outbox", "--interval", "0.2", name="relay-quiet-parent", log_dir=log_dir, ready="outbox relay started"
    )
    try:
        relay.start(timeout=120)
    finally:
        relay.stop()


# --- nothing outlives its parent -------------------------------------------------------

MARKER = "FITNESS_PROCESS_MARKER"

# A parent as the benchmarks are: children started through tests/support.py (each a
# process group: a bash leader and two `sleep` children of its own), then it ends as told.
PARENT = """
import sys, time
sys.path.insert(0, sys.argv[2])
import django
django.setup()
from pathlib import Path
from tests import processes
from tests.support import ChildProcess

processes.handle_termination()
log_dir = Path(sys.argv[3])
how = sys.argv[1]
for i in range(2):
    ChildProcess(["bash", "-c", "sleep 600 & sleep 600 & echo up; wait"], name=f"child-{i}", log_dir=log_dir,
                 ready="up").start(timeout=60)
if how == "ready-timeout":  # a child whose readiness line never comes
    ChildProcess(["bash", "-c", "sleep 600 & sleep 600 & wait"], name="never-ready", log_dir=log_dir,
                 ready="up").start(timeout=2)
print("started", flush=True)
if how == "exception":
    raise RuntimeError("a scenario failed midway")
if how == "return":
    sys.exit(0)
time.sleep(600)  # until a signal comes
"""


def marked_processes(marker: str) -> list[str]:
    """The command lines of every process whose environment carries MARKER=marker."""
    needle = f"{MARKER}={marker}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle in (proc / "environ").read_bytes().split(b"\0"):
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{proc.name}: {command}")
        except OSError:  # gone meanwhile, or a zombie
            continue
    return found


def kill_marked(process: subprocess.Popen, marker: str) -> None:
    """Never leave them behind, even when the test fails."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    for line in marked_processes(marker):
        try:
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
        except ProcessLookupError:
            pass


def start_marked(argv: list[str], marker: str) -> subprocess.Popen:
    env = dict(os.environ, **{MARKER: marker}, DJANGO_SETTINGS_MODULE="tests.settings", PYTHONUNBUFFERED="1")
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


@pytest.mark.parametrize("how", ["return", "exception", "ready-timeout", "SIGTERM", "SIGINT", "SIGHUP"])
def test_no_child_outlives_its_parent_however_the_parent_ends(how, tmp_path):
    marker = uuid.uuid4().hex
    parent = start_marked([sys.executable, "-c", PARENT, how, str(ROOT), str(tmp_path)], marker)
    try:
        if how.startswith("SIG"):
            assert parent.stdout.readline() == b"started\n"
            assert len(marked_processes(marker)) >= 1 + 2 * 3  # the parent, two groups of three
            parent.send_signal(getattr(signal, how))
        output = parent.communicate(timeout=120)[0].decode(errors="replace")
        assert parent.returncode != 0 or how == "return", output
        # the parent waits for its children's groups to be empty before it exits
        assert marked_processes(marker) == [], output
    finally:
        kill_marked(parent, marker)


def test_a_benchmark_stopped_midway_leaves_no_worker_relay_or_broker_node(tmp_path):
    """benchmarks/faults.py (AI workers, a relay, a private RabbitMQ node) gets SIGTERM once its workers run."""
    marker = uuid.uuid4().hex
    bench = start_marked([sys.executable, "benchmarks/faults.py", "-n", "20", "--workers", "2"], marker)
    try:
        wait_for(lambda: sum("celery" in line for line in marked_processes(marker)) >= 2, timeout=600,
                 interval=0.5, what="the benchmark's AI workers")
        assert any("beam.smp" in line for line in marked_processes(marker)), "its private RabbitMQ node"
        bench.send_signal(signal.SIGTERM)
        output = bench.communicate(timeout=300)[0].decode(errors="replace")
        assert bench.returncode == 128 + signal.SIGTERM, output
        assert marked_processes(marker) == [], output
    finally:
        kill_marked(bench, marker)
