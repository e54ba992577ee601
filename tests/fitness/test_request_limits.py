"""Request size limits (fitness/request_limits.py, gunicorn.conf.py): no body, request line or header
can make a web worker hold more than the largest legitimate request.

In-process tests show which endpoint refuses what; the ones through gunicorn (the Procfile's web
process) show that the refusal comes before the body is read: the client declares 2 GB and sends a
few kilobytes, and the answer comes at once.
"""

from __future__ import annotations

import http.client
import json
import runpy
import socket
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from monitoring.models import TelemetryReading
from tasks.models import LaundryTask
from tests import factories
from tests.monitoring.support import TELEMETRY_URL, equipment, machine_client
from tests.support import ROOT

TOKEN_URL = "/api/v1/auth/token/"
LIMIT = settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def largest_reading() -> dict:
    """A reading with the longest legitimate value of every field (monitoring.api.TelemetryReadingSerializer)."""
    from monitoring.api import TelemetryReadingSerializer

    fields = TelemetryReadingSerializer().fields
    assert set(fields) == {"recorded_at", "error_code", "temperature_c", "vibration_g", "door_open", "cycle_state"}
    at = (timezone.now() - timedelta(minutes=1)).astimezone(timezone.get_fixed_timezone(-(9 * 60 + 30)))
    return {
        "recorded_at": at.isoformat(timespec="microseconds"),  # 2026-11-25T10:00:00.123456-09:30
        "error_code": "E" * 16,
        "temperature_c": -1.2345678901234567e-05,  # 17 significant digits and an exponent: the longest repr
        "vibration_g": 1.2345678901234567e-05,
        "door_open": False,
        "cycle_state": max(fields["cycle_state"].choices, key=len),
    }


def test_the_body_limit_is_what_the_largest_telemetry_batch_needs():
    reading = json.dumps(largest_reading())
    assert len(reading) <= settings.TELEMETRY_READING_MAX_JSON_BYTES, reading
    readings = [largest_reading()] * settings.MONITORING_TELEMETRY_MAX_READINGS
    pretty, compact = json.dumps(readings, indent=4), json.dumps(readings, separators=(",", ":"))
    assert len(pretty) < LIMIT < 4 * len(compact)  # room for pretty-printing, not for gigabytes
    assert LIMIT < 2_621_440  # below Django's default


@pytest.mark.django_db
def test_a_full_pretty_printed_telemetry_batch_of_the_largest_readings_is_accepted():
    _, key = equipment()
    batch = json.dumps([largest_reading()] * settings.MONITORING_TELEMETRY_MAX_READINGS, indent=4)
    response = machine_client(key).post(TELEMETRY_URL, batch, content_type="application/json")
    assert response.status_code == 202, response.content[:500]
    assert TelemetryReading.objects.count() == settings.MONITORING_TELEMETRY_MAX_READINGS


@pytest.mark.django_db
def test_a_telemetry_body_one_byte_over_the_limit_is_a_json_413_naming_the_limit_and_stores_nothing():
    _, key = equipment()
    body = json.dumps([largest_reading()]).ljust(LIMIT + 1)  # valid JSON, padded with spaces
    response = machine_client(key).post(TELEMETRY_URL, body, content_type="application/json")
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": f"Request body too large: {LIMIT + 1} bytes; limit {LIMIT} bytes."}
    assert TelemetryReading.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("path, content_type", [
    (TOKEN_URL, "application/json"),
    (TOKEN_URL, "application/x-www-form-urlencoded"),
    (TOKEN_URL, "multipart/form-data; boundary=xyz"),
    (TELEMETRY_URL, "application/json"),
    ("/api/v1/devices/", "application/json"),
    ("/api/v1/tasks/1/confirm/", "application/json"),
    ("/admin/login/", "application/x-www-form-urlencoded"),
    ("/admin/login/", "multipart/form-data; boundary=xyz"),
    ("/healthz", "application/json"),
    ("/no/such/page/", "application/json"),
])
def test_every_endpoint_refuses_a_body_over_the_limit_with_a_json_413(path, content_type):
    response = Client().post(path, b"x" * (LIMIT + 1), content_type=content_type)
    assert response.status_code == 413, (path, response.status_code)
    assert response.json()["detail"].endswith(f"limit {LIMIT} bytes.")


@pytest.mark.django_db
def test_a_body_at_the_limit_reaches_the_token_endpoint():
    body = json.dumps({"username": "nobody", "password": "wrong"}).ljust(LIMIT)
    response = Client().post(TOKEN_URL, body, content_type="application/json")
    assert response.status_code == 400  # read and answered: wrong credentials
    assert "non_field_errors" in response.json()


@pytest.mark.django_db
def test_the_photo_upload_keeps_its_own_larger_limit():
    helper = factories.helper()
    photo = factories.noisy_jpeg(target_bytes=LIMIT * 2)
    assert len(photo) > LIMIT
    response = factories.api_client_for(helper).post(
        "/api/v1/tasks/", {"photo": SimpleUploadedFile("big.jpg", photo, content_type="image/jpeg")},
        format="multipart",
    )
    assert response.status_code == 202, response.json()
    assert LaundryTask.objects.get().photo_size == len(photo)


@pytest.mark.django_db
def test_a_photo_uploads_form_fields_over_the_limit_are_a_json_413():
    # inside the photo's limit, but the form fields (not files) are held to DATA_UPLOAD_MAX_MEMORY_SIZE
    helper = factories.helper()
    response = factories.api_client_for(helper).post(
        "/api/v1/tasks/", {"note": "n" * (LIMIT + 1), "photo": factories.photo_bytes()}, format="multipart",
    )
    assert response.status_code == 413
    assert response.json() == {"detail": f"Request body too large: limit {LIMIT} bytes."}
    assert LaundryTask.objects.count() == 0


# --- through gunicorn ------------------------------------------------------------------


def exchange(web, head: bytes, body_prefix: bytes = b"", *, timeout: float = 30.0) -> tuple[int, dict, bytes]:
    """Send `head` and the first bytes of a body on a raw socket, then read the answer:
    (status, headers, body). A server that waited for the rest of the body would time out."""
    with socket.create_connection(("127.0.0.1", web.port), timeout=timeout) as sock:
        sock.sendall(head + body_prefix)
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def post_head(path: str, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: localhost", "Content-Type: application/json", *headers, "", ""]
    return "\r\n".join(lines).encode()


@pytest.mark.django_db(transaction=True)
def test_through_gunicorn_a_2_gb_body_on_the_token_endpoint_is_refused_before_it_is_read(web):
    started = time.monotonic()
    # 2 GB declared, 64 KB sent: the answer comes without the rest
    status, headers, body = exchange(web, post_head(TOKEN_URL, "Content-Length: 2000000000"), b"x" * 65536)
    assert status == 413
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"detail": f"Request body too large: 2000000000 bytes; limit {LIMIT} bytes."}
    assert time.monotonic() - started < 20


@pytest.mark.django_db(transaction=True)
def test_through_gunicorn_a_chunked_body_without_content_length_is_refused_unread(web):
    # one chunk of 64 KB and never the last one: a server that read the body would wait for it
    chunk = b"10000\r\n" + b"x" * 65536 + b"\r\n"
    status, headers, body = exchange(web, post_head(TOKEN_URL, "Transfer-Encoding: chunked"), chunk)
    assert status == 411
    assert json.loads(body)["detail"].startswith("A request body needs a Content-Length header")


@pytest.mark.django_db(transaction=True)
def test_through_gunicorn_a_long_request_line_and_too_many_or_too_large_headers_are_refused(web):
    gunicorn_conf = SimpleNamespace(**runpy.run_path(str(ROOT / "gunicorn.conf.py")))
    line_limit = gunicorn_conf.limit_request_line
    status, _, _ = exchange(web, f"GET /healthz?{'q' * line_limit} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    assert status == 414
    many = "".join(f"X-Header-{i}: {i}\r\n" for i in range(gunicorn_conf.limit_request_fields + 1))
    status, _, _ = exchange(web, f"GET /healthz HTTP/1.1\r\nHost: localhost\r\n{many}\r\n".encode())
    assert status == 431
    large = "a" * (gunicorn_conf.limit_request_field_size + 1)
    status, _, _ = exchange(web, f"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Large: {large}\r\n\r\n".encode())
    assert status == 431
    # and within the limits the same requests pass
    fitting = "".join(f"X-Header-{i}: {i}\r\n" for i in range(gunicorn_conf.limit_request_fields - 5))
    status, _, _ = exchange(web, f"GET /healthz?{'q' * 2000} HTTP/1.1\r\nHost: localhost\r\n{fitting}\r\n".encode())
    assert status == 200
