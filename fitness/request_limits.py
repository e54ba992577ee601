"""Request body limits: no request can make a web worker hold more than the largest legitimate body.

Every endpoint refuses a body larger than DATA_UPLOAD_MAX_MEMORY_SIZE (settings.py derives it
from the largest telemetry batch) with a JSON 413 that names the limit, before any view, parser
or authentication runs: `RequestBodyLimitMiddleware` reads the declared Content-Length and never
the body. A body without a Content-Length (`Transfer-Encoding: chunked`) gets a JSON 411: Django
would read none of it and the view would answer as if the request had no body.

One view takes a larger body and checks it itself (`body_size_checked_by_view = True` on the view
class): the photo upload (tasks.api, PHOTO_MAX_BYTES), before it reads a byte. Its form fields
are still held to DATA_UPLOAD_MAX_MEMORY_SIZE by Django's multipart parser; the
RequestDataTooBig that Django raises then, anywhere a body is read, is answered by
`bad_request` (the URLconf's handler400) with the same JSON 413.

The request line and headers are bounded before Django sees them, by gunicorn
(limit_request_line, limit_request_fields, limit_request_field_size in gunicorn.conf.py).
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.urls import Resolver404, resolve
from django.views import defaults


def body_too_large(limit: int, declared: int | None = None) -> JsonResponse:
    size = f"{declared} bytes; " if declared is not None else ""
    return JsonResponse({"detail": f"Request body too large: {size}limit {limit} bytes."}, status=413)


def length_required() -> JsonResponse:
    return JsonResponse(
        {"detail": "A request body needs a Content-Length header; chunked bodies are not accepted."}, status=411
    )


def declared_length(request) -> int:
    try:
        return max(int(request.META.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:  # gunicorn refuses a malformed Content-Length before Django sees it
        return 0


def body_size_checked_by_view(request) -> bool:
    """True when the view of this path refuses a too-large body itself (the photo upload)."""
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return False
    view_class = getattr(match.func, "view_class", None)
    return bool(view_class and getattr(view_class, "body_size_checked_by_view", False))


class RequestBodyLimitMiddleware:
    """411 for a chunked body, 413 for a declared body over DATA_UPLOAD_MAX_MEMORY_SIZE (JSON, the limit named).

    Early in MIDDLEWARE: after the correlation id (the refusal is logged like any request),
    before everything that may read the body (sessions, CSRF, the views).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
            return length_required()
        declared = declared_length(request)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if declared > limit and not body_size_checked_by_view(request):
            return body_too_large(limit, declared)
        return self.get_response(request)


def bad_request(request, exception=None):
    """handler400: Django's RequestDataTooBig (a body read past the limit) as the JSON 413; else Django's 400."""
    if isinstance(exception, RequestDataTooBig):
        return body_too_large(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    return defaults.bad_request(request, exception)
