"""Liveness and readiness probes (Kubernetes `/healthz` and `/readyz`)."""

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.urls import resolve
from kombu import Connection

from messaging.broker import connect_once

# What Kubernetes probes and Prometheus call, every few seconds, addressing a pod by its IP.
PROBE_AND_SCRAPE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def healthz(request):
    """The process is alive and serving requests; says nothing about its dependencies."""
    return JsonResponse({"status": "ok"})


def _check_postgresql() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_rabbitmq() -> None:
    timeout = settings.READINESS_TIMEOUT_SECONDS
    with Connection(settings.CELERY_BROKER_URL, connect_timeout=timeout) as broker:
        connect_once(broker)


CHECKS = {"postgresql": _check_postgresql, "rabbitmq": _check_rabbitmq}


def readyz(request):
    """200 when PostgreSQL and RabbitMQ both answer; 503 naming the part that does not."""
    checks: dict[str, str] = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as exc:  # any failure means "not ready"; the message says which
            checks[name] = f"unavailable: {exc.__class__.__name__}: {exc}".strip()
        else:
            checks[name] = "ok"
    failing = [name for name, result in checks.items() if result != "ok"]
    body = {"status": "unavailable" if failing else "ready", "checks": checks, "failing": failing}
    return JsonResponse(body, status=503 if failing else 200)


class AnyHostForProbesMiddleware:
    """Answer /healthz, /readyz and /metrics whatever the request's Host header says.

    Kubernetes probes and Prometheus address a pod by its IP (`Host: 10.1.2.3:8000`), which
    ALLOWED_HOSTS does not list, so Django's CommonMiddleware would answer 400 DisallowedHost
    and the pod would never become ready. These endpoints build no URLs from the host, so the
    host check protects nothing there; every other path keeps it. Before CommonMiddleware.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info not in PROBE_AND_SCRAPE_PATHS:
            return self.get_response(request)
        match = resolve(request.path_info)
        return match.func(request, *match.args, **match.kwargs)
