"""The web process as the Procfile starts it (gunicorn, gunicorn.conf.py, DEBUG off) serves its own
static files: hashed, compressed, cached for long; the API docs need no other host; photos are
never public.

Everything here goes through the real gunicorn (the session's `web` fixture), not Django's
test client, which would not show what is and is not served under `make run`.
"""

from __future__ import annotations

import gzip
import re
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from django.conf import settings

from tests.support import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

YEAR = 365 * 24 * 3600


def get(web, path: str, **headers: str):
    """(status, headers, body) of a GET through gunicorn; errors are answers too."""
    request = urllib.request.Request(urljoin(web.url, path), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


class Assets(HTMLParser):
    """Every URL a page loads by itself: scripts, stylesheets, icons, images, iframes."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "img", "iframe", "source") and attrs.get("src"):
            self.urls.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.urls.append(attrs["href"])


def assets_of(html: bytes) -> list[str]:
    parser = Assets()
    parser.feed(html.decode())
    return parser.urls


def test_the_admin_pages_stylesheets_are_served_hashed_compressed_and_cached_for_ten_years(web):
    status, _, html = get(web, "/admin/login/")
    assert status == 200
    stylesheets = [url for url in assets_of(html) if url.endswith(".css")]
    assert any(re.fullmatch(r"/static/admin/css/base\.[0-9a-f]{12}\.css", url) for url in stylesheets), stylesheets
    for url in stylesheets:
        status, headers, body = get(web, url, **{"Accept-Encoding": "gzip"})
        assert status == 200, url
        assert headers["Content-Type"].startswith("text/css")
        assert headers["Content-Encoding"] == "gzip" and b"{" in gzip.decompress(body)
        cache = headers["Cache-Control"]
        assert "immutable" in cache and int(re.search(r"max-age=(\d+)", cache).group(1)) >= YEAR, cache


def test_the_docs_pages_load_only_our_own_static_files(web):
    for page in ("/api/docs/", "/api/redoc/"):
        status, headers, html = get(web, page)
        assert status == 200, page
        # the browser may load nothing from another host (ReDoc's bundle would show Redocly's logo)
        policy = dict(part.strip().split(" ", 1) for part in headers["Content-Security-Policy"].split(";"))
        assert policy["default-src"] == policy["img-src"].split()[0] == policy["script-src"].split()[0] == "'self'"
        assets = assets_of(html)
        assert any(url.endswith(".js") for url in assets), (page, assets)  # Swagger UI's or ReDoc's bundle
        assert b"https://" not in html and b"http://" not in html and b"//fonts." not in html, page
        for url in assets:
            parts = urlsplit(url)
            assert not parts.scheme and not parts.netloc and url.startswith("/static/"), (page, url)
            assert get(web, url)[0] == 200, (page, url)


def test_photos_are_not_served_from_media_or_static(web):
    photo = Path(settings.MEDIA_ROOT) / "tasks" / "1" / "public-check.jpg"
    photo.parent.mkdir(parents=True, exist_ok=True)
    photo.write_bytes(b"\xff\xd8 not for everyone")
    try:
        for path in ("/media/tasks/1/public-check.jpg", "/static/tasks/1/public-check.jpg",
                     "/static/../media/tasks/1/public-check.jpg", "/static/%2e%2e/media/tasks/1/public-check.jpg"):
            status, _, body = get(web, path)
            assert status == 404 and b"not for everyone" not in body, path
    finally:
        photo.unlink()


def test_an_unknown_page_is_a_plain_404_without_debug_details(web):
    status, _, body = get(web, "/no/such/page/")
    assert status == 404
    assert b"URLconf" not in body and b"DEBUG" not in body


def test_the_master_warms_the_app_up_before_it_forks_a_worker(web):
    lines = web.log().splitlines()
    warmed = next(i for i, line in enumerate(lines) if "App warmed up in" in line)
    booted = next(i for i, line in enumerate(lines) if "Booting worker" in line)
    assert warmed < booted
    assert not [line for line in lines if "warm-up step" in line]  # no step failed


def test_with_log_format_plain_a_request_is_one_readable_line_with_its_correlation_id(web):
    request_id = "plain-log-check-1"
    status, headers, _ = get(web, "/api/v1/tasks/", **{"X-Request-ID": request_id})
    assert status == 401 and headers["X-Request-ID"] == request_id

    def line():
        return next((text for text in web.log().splitlines() if request_id in text), None)

    logged = wait_for(line, timeout=30, what="the request's log line")
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO fitness\.request request finished: GET /api/v1/tasks/ 401 "
        rf"in [\d.]+ ms correlation_id={request_id}",
        logged,
    ), logged
    assert not logged.startswith("{")
    gunicorn_line = next(text for text in web.log().splitlines() if "Worker ready" in text)
    assert re.fullmatch(r"\S+ \S+ INFO gunicorn\.error Worker ready \(pid: \d+\)", gunicorn_line), gunicorn_line
