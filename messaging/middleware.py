import logging
import time

from django.utils.functional import SimpleLazyObject, empty

from fitness.health import PROBE_AND_SCRAPE_PATHS
from messaging.correlation import acceptable, correlation_scope, log_scope, new_correlation_id

REQUEST_ID_HEADER = "X-Request-ID"

logger = logging.getLogger("fitness.request")


class CorrelationIdMiddleware:
    """Give every request a correlation id (the client's X-Request-ID, or a new one).

    Events published while handling the request carry it, and the response returns it.
    Every request ends with one "request finished" log line (method, path, status,
    duration_ms, user_id), which carries it too.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        supplied = request.headers.get(REQUEST_ID_HEADER)
        request_id = supplied if acceptable(supplied) else new_correlation_id()
        request.correlation_id = request_id
        started = time.monotonic()
        with correlation_scope(request_id), log_scope():
            response = self.get_response(request)
            _log_request(request, response, (time.monotonic() - started) * 1000)
        response[REQUEST_ID_HEADER] = request_id
        return response


def _log_request(request, response, duration_ms: float) -> None:
    # probes and scrapes come every few seconds: their lines are DEBUG, not INFO
    level = logging.DEBUG if request.path in PROBE_AND_SCRAPE_PATHS else logging.INFO
    if not logger.isEnabledFor(level):
        return
    logger.log(
        level, "request finished: %s %s %s in %.1f ms", request.method, request.path, response.status_code,
        duration_ms,
        extra={"method": request.method, "path": request.path, "status": response.status_code,
               "duration_ms": round(duration_ms, 1), "user_id": _user_id(request)},
    )


def _user_id(request) -> int | None:
    user = getattr(request, "user", None)
    if isinstance(user, SimpleLazyObject) and user._wrapped is empty:
        return None  # nobody looked the session's user up; logging is no reason to query for it
    return user.pk if user is not None and user.is_authenticated else None
