"""The directory of prometheus-client's multiprocess files: chosen, made and exported once.

Every process (gunicorn workers, Celery pool children, the relay, the dead-letter archiver)
writes its counters and histograms to files in PROMETHEUS_MULTIPROC_DIR, and GET /metrics sums
them (observability/metrics.py). prometheus-client reads that environment variable when it is
first imported, so it must be set before anything imports the library or the metrics: the
project package calls `configure_multiprocess_dir()` first thing (fitness/__init__.py), which
every process runs before its settings, its Celery app or any app (`gunicorn fitness.wsgi`,
`celery -A fitness`, `manage.py`, the tests' settings). The one import that comes earlier,
Flower's command plugin under `celery`, is dealt with in observability/metrics.py.

This module imports nothing of the project or of Django: it runs before the settings exist.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# `make run` empties it at start (Makefile); tests and benchmarks set a directory of their own.
DEFAULT_DIRECTORY = Path(__file__).resolve().parent.parent / "var" / "metrics"


def configure_multiprocess_dir(environ: MutableMapping[str, str] = os.environ) -> str:
    """Make the metric files' directory and put it in PROMETHEUS_MULTIPROC_DIR; return it.

    The directory is PROMETHEUS_MULTIPROC_DIR when set, else var/metrics in the checkout. One
    that cannot be made or written to (the image runs as an unprivileged user in Kubernetes)
    gives way to a directory of this user's own under the temp dir (each pod has its own /tmp).
    Calling it again keeps the directory chosen.
    """
    directory = environ.get(VARIABLE, str(DEFAULT_DIRECTORY))
    try:
        os.makedirs(directory, exist_ok=True)
        if not os.access(directory, os.W_OK):
            raise PermissionError(directory)
    except OSError:
        directory = os.path.join(tempfile.gettempdir(), f"fitness-metrics-{os.getuid()}")
        os.makedirs(directory, exist_ok=True)
    environ[VARIABLE] = directory
    return directory
