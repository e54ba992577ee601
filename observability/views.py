"""GET /metrics: Prometheus's text format, behind a bearer token when METRICS_TOKEN is set.

In development it is open without a token. In production (DJANGO_ENV=production) it is closed
until a token is configured: without METRICS_TOKEN every scrape is a 403 that says so. The web
keeps serving the API meanwhile (a missing metrics token is no reason to refuse traffic), and
Prometheus's `up` for the web says 0, which its alerting sees.
"""

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
    In production without METRICS_TOKEN: 403.
    """
    if settings.PRODUCTION and not settings.METRICS_TOKEN:
        return HttpResponse(
            "403 Forbidden: /metrics is closed in production until METRICS_TOKEN is set "
            "(then scrape it with Authorization: Bearer <METRICS_TOKEN>)\n",
            status=403, content_type="text/plain; charset=utf-8",
        )
    if not _authorized(request):
        response = HttpResponse(
            "401 Unauthorized: /metrics needs the header Authorization: Bearer <METRICS_TOKEN>\n",
            status=401, content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body, content_type = metrics.render(request.headers.get("Accept", ""), collectors=[SystemCollector()])
    return HttpResponse(body, content_type=content_type)
