"""The helpers that start real processes (tests/support.py, tests/processes.py, benchmarks/).

A child is ready when its readiness line appears in its log, whatever the parent's log
level; and nothing a helper started outlives the process that started it, however that
process ends.
"""

from __future__ import annotations

import pytest

from tests.support import CommandProcess


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
