"""Liveness and readiness probes (Kubernetes `/healthz` and `/readyz`)."""

from django.db import connection
from django.http import JsonResponse
from django.urls import resolve

from messaging.broker_status import broker_status

# What Kubernetes probes and Prometheus call, every few seconds, addressing a pod by its IP.
PROBE_AND_SCRAPE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def healthz(request):
    """The process is alive and serving requests; says nothing about its dependencies."""
    return JsonResponse({"status": "ok"})


def _check_postgresql() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def _report_rabbitmq() -> str:
    return broker_status().detail


# What readiness depends on: PostgreSQL only. With RabbitMQ down the web keeps accepting
# work into the outbox (the relay publishes it later), so RabbitMQ is reported, not required.
REQUIRED = {"postgresql": _check_postgresql}
REPORTED = {"rabbitmq": _report_rabbitmq}


def readyz(request):
    """200 while PostgreSQL answers, 503 naming it when it does not; RabbitMQ's state is in the body.

    `checks` has every part's state, `failing` the required parts that are down (readiness
    fails), `degraded` the reported parts that are down (the pod keeps serving). RabbitMQ's
    state comes from `messaging.broker_status` (a cached, bounded check), so a hung broker
    never slows the probe.
    """
    checks: dict[str, str] = {}
    failing: list[str] = []
    for name, check in REQUIRED.items():
        try:
            checks[name] = check()
        except Exception as exc:  # any failure means "not ready"; the message says which
            checks[name] = f"unavailable: {exc.__class__.__name__}: {exc}".strip()
            failing.append(name)
    degraded = []
    for name, report in REPORTED.items():
        checks[name] = report()
        if checks[name] != "ok":
            degraded.append(name)
    body = {"status": "unavailable" if failing else "ready", "checks": checks, "failing": failing,
            "degraded": degraded}
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
