"""The bare-Django floors of benchmarks/api_submit.py: what Django itself costs for an upload.

One view takes the same multipart photo as POST /api/v1/tasks/, writes it to disk and
answers 202: no database, no middleware, no authentication, no image check. It is a
gunicorn app and config in one module, so it runs without the project's gunicorn.conf.py
and settings:

    FLOOR_UPLOAD_DIR=/tmp/floor gunicorn benchmarks.upload_floor:application \\
        --config python:benchmarks.upload_floor --workers 4 --bind 127.0.0.1:8766

With FLOOR_DATABASE_URL set it is the *write floor*: the same view also makes the upload's
round trips to PostgreSQL with psycopg2 itself, no ORM: the token lookup, then one statement
(its own transaction) with the task's INSERT … ON CONFLICT and its event's INSERT, and the
NOTIFY after it (tables of its own, created at start). What the project adds above that is
Django's ORM and DRF, the checks and the storage API; what it adds above the bare floor is
mostly the database, on the same cores.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from django.conf import settings

# gunicorn settings, read when this module is given as --config (the project's are not)
preload_app = True
control_socket_disable = True  # one fixed path per user: the project's server runs beside this one

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="the bare-Django floor of a benchmark",  # noqa: S106 - signs nothing
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
        DATABASES={},  # upload limits: Django's defaults, as in the project (a 200 KB photo stays in memory)
    )

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpResponse, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402

UPLOAD_DIR = Path(os.environ.get("FLOOR_UPLOAD_DIR", "var/upload-floor"))
DATABASE_URL = os.environ.get("FLOOR_DATABASE_URL", "")
TOKEN = "the write floor's token"  # noqa: S105 - a row of its own table

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS floor_token (digest text PRIMARY KEY, user_id bigint NOT NULL);"
    "CREATE TABLE IF NOT EXISTS floor_task (id bigserial PRIMARY KEY, user_id bigint NOT NULL,"
    " idempotency_key text, photo text NOT NULL, created_at timestamptz NOT NULL,"
    " UNIQUE (user_id, idempotency_key));"
    "CREATE TABLE IF NOT EXISTS floor_outbox (id bigserial PRIMARY KEY, event_id uuid NOT NULL UNIQUE,"
    " envelope jsonb NOT NULL, created_at timestamptz NOT NULL, published_at timestamptz);"
    "INSERT INTO floor_token VALUES (md5(%s), 1) ON CONFLICT DO NOTHING"
)
_connection = None


def _database():
    """This worker's connection (opened on its first request, kept: as CONN_MAX_AGE does)."""
    global _connection
    if _connection is None:
        import psycopg2

        _connection = psycopg2.connect(DATABASE_URL)
        _connection.autocommit = True  # as Django runs it: each statement outside atomic() commits itself
    return _connection


def _write(request, photo_name: str) -> None:
    """The upload's three round trips, as the project makes them (tests/tasks/test_submit_statements.py)."""
    with _database().cursor() as cursor:
        cursor.execute("SELECT user_id FROM floor_token WHERE digest = md5(%s)", [TOKEN])
        (user_id,) = cursor.fetchone()
        cursor.execute(
            "WITH task AS (INSERT INTO floor_task (user_id, idempotency_key, photo, created_at)"
            " VALUES (%s, %s, %s, now()) ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING id),"
            " event AS (INSERT INTO floor_outbox (event_id, envelope, created_at)"
            " SELECT %s, jsonb_set(%s::jsonb, '{task_id}', to_jsonb(task.id)), now() FROM task RETURNING id)"
            " SELECT (SELECT id FROM task), (SELECT id FROM event)",
            [user_id, request.headers.get("Idempotency-Key"), photo_name,
             str(uuid.uuid4()), json.dumps({"task_id": 1, "photo": photo_name})],
        )
        cursor.fetchone()
        cursor.execute("SELECT set_config('synchronous_commit', 'off', true), pg_notify('floor', '')")


def upload(request):
    photo = request.FILES.get("photo") if request.method == "POST" else None
    if photo is None:
        return JsonResponse({"photo": ["POST a multipart photo."]}, status=400)
    name = f"{uuid.uuid4().hex}.jpg"
    with open(UPLOAD_DIR / name, "wb") as out:
        for chunk in photo.chunks():
            out.write(chunk)
    if DATABASE_URL:
        _write(request, name)
    return JsonResponse({"photo": name, "status": "submitted"}, status=202)


def healthz(request):
    return HttpResponse("ok")


urlpatterns = [path("upload/", upload), path("healthz", healthz)]

application = get_wsgi_application()

if DATABASE_URL:  # in the master (preload_app), before the workers fork: they connect on their own
    import psycopg2

    with psycopg2.connect(DATABASE_URL) as _setup, _setup.cursor() as _cursor:
        _cursor.execute(_SCHEMA, [TOKEN])
    _setup.close()
