"""File probes for Celery workers (Kubernetes exec probes), instead of `celery inspect ping`.

`celery inspect ping` starts a second Python process with Django and Celery and goes
through the broker: seconds of CPU per probe, and a failing probe while RabbitMQ is
briefly away. With CELERY_PROBE_DIR set, a worker instead keeps two files there:

* `ready` exists from `worker_ready` (consuming) until shutdown begins: readiness;
* `alive` is touched at every event heartbeat (every 2 s, from the worker's main loop),
  so a stale `alive` means a hung worker: liveness (see deploy/kubernetes/).

Without CELERY_PROBE_DIR (development, tests) nothing is written.
"""

from __future__ import annotations

import os
from pathlib import Path

from celery.signals import heartbeat_sent, worker_ready, worker_shutting_down

PROBE_DIR_VARIABLE = "CELERY_PROBE_DIR"


def _probe_dir() -> Path | None:
    directory = os.environ.get(PROBE_DIR_VARIABLE)
    return Path(directory) if directory else None


def _touch(name: str) -> None:
    directory = _probe_dir()
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / name).touch()


@worker_ready.connect
def _ready(**_: object) -> None:
    _touch("ready")
    _touch("alive")


@heartbeat_sent.connect
def _alive(**_: object) -> None:
    _touch("alive")


@worker_shutting_down.connect
def _not_ready(**_: object) -> None:
    directory = _probe_dir()
    if directory is not None:
        (directory / "ready").unlink(missing_ok=True)
