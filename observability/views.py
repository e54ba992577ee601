"""GET /metrics: Prometheus's text format, optionally behind a bearer token."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

from observability import metrics
from observability.collectors import SystemCollector


def _authorized(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if not token:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Every process's counters and histograms, queue depths and the outbox backlog.

    Open unless METRICS_TOKEN is set; then `Authorization: Bearer <METRICS_TOKEN>` is needed.
    """
    if not _authorized(request):
        response = HttpResponse(
            "401 Unauthorized: /metrics needs the header Authorization: Bearer <METRICS_TOKEN>\n",
            status=401, content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body, content_type = metrics.render(request.headers.get("Accept", ""), collectors=[SystemCollector()])
    return HttpResponse(body, content_type=content_type)
