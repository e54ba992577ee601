"""A per-process-group metrics endpoint for processes that are not the web.

On one host (`make run`) every process writes its metric files into the one
PROMETHEUS_MULTIPROC_DIR and the web's GET /metrics sums them all. In Kubernetes each pool
is its own pod with its own files, which no web pod can read; there, METRICS_EXPORTER_PORT
makes a Celery worker (its main process, summing its pool children) and the outbox relay
serve their pod's counters and histograms on that port for Prometheus to scrape pod by pod.
The queue and outbox gauges are served by the web only.

The exporter has no authentication: it listens on METRICS_EXPORTER_ADDRESS, this host only in
development, every address of the pod in production, where deploy/kubernetes/network-policy.yaml
lets only Prometheus reach the port.
"""

from __future__ import annotations

import logging

from django.conf import settings

logger = logging.getLogger(__name__)

_started = False


def start_exporter() -> int | None:
    """Serve this pod's metrics on METRICS_EXPORTER_PORT (if set); returns the port."""
    global _started
    port = settings.METRICS_EXPORTER_PORT
    if not port or _started:
        return None
    from prometheus_client import start_http_server

    from observability.metrics import process_registry

    address = settings.METRICS_EXPORTER_ADDRESS
    start_http_server(port, addr=address, registry=process_registry())  # a daemon thread
    _started = True
    logger.info("metrics exporter serving on %s port %s", address, port)
    return port


def _on_worker_ready(**_: object) -> None:
    try:
        start_exporter()
    except OSError as exc:  # the port is taken: metrics are not worth the worker
        logger.error("metrics exporter not started on port %s: %s", settings.METRICS_EXPORTER_PORT, exc)


def connect_worker_signal() -> None:
    from celery.signals import worker_ready

    worker_ready.connect(_on_worker_ready, weak=False, dispatch_uid="observability.exporter")
