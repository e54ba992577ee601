"""Logs: one JSON object per line, with correlation_id, event_id and task_id, from the
request through the AI worker; X-Request-ID in and out."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from gunicorn.config import Config

from fitness.logging import ContextFilter, GunicornLogger, JsonFormatter, PlainFormatter, log_format
from messaging.correlation import bind_log_context, correlation_scope, current_log_context, log_scope
from messaging.models import OutboxMessage
from tasks.models import LaundryTask
from tests import factories
from tests.support import ROOT, subprocess_env, wait_for

# the AI consumer's model, trained once per module that uses it
from tests.tasks.test_ai_reading import active_model, trained_model_row  # noqa: F401

GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")


def handler_to(stream: io.StringIO, formatter: logging.Formatter) -> logging.Handler:
    """A handler as settings.LOGGING builds it: the context filter and one of our formatters."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(ContextFilter())
    return handler


@pytest.fixture
def captured():
    """Every record of this process, as the JSON lines the console would print."""
    stream = io.StringIO()
    handler = handler_to(stream, JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    yield SimpleNamespace(
        text=stream.getvalue, records=lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    )
    root.removeHandler(handler)


def emit(formatter: logging.Formatter, *args, logger: str = "tests.logging", level=logging.INFO, **kwargs) -> str:
    stream = io.StringIO()
    log = logging.getLogger(logger)
    handler = handler_to(stream, formatter)
    log.addHandler(handler)
    try:
        log.log(level, *args, **kwargs)
    finally:
        log.removeHandler(handler)
    return stream.getvalue()


# --- the formatters and the context filter ---------------------------------------------

def test_a_record_is_one_json_object_on_one_line_with_the_context_fields():
    with correlation_scope("req-1"), log_scope(event_id="e-1", event_type="TaskSubmittedEvent", task_id=42):
        try:
            raise ValueError("a photo of two\nlines")
        except ValueError:
            out = emit(JsonFormatter(), "task %s: naïve café ✓", 42, exc_info=True, extra={"consumer": "ml.read"})

    assert out.endswith("\n") and out.count("\n") == 1
    record = json.loads(out)
    assert record["message"] == "task 42: naïve café ✓"  # readable, not \u-escaped
    assert (record["level"], record["logger"]) == ("INFO", "tests.logging")
    assert record["time"].endswith("+00:00")
    assert (record["correlation_id"], record["event_id"], record["event_type"], record["task_id"]) == (
        "req-1", "e-1", "TaskSubmittedEvent", 42)
    assert record["consumer"] == "ml.read"
    assert "ValueError: a photo of two" in record["exc_info"]
    assert '"task_id": 42' in out  # what `grep '"task_id": 42'` finds


def test_a_field_given_by_the_call_site_wins_over_the_context():
    with correlation_scope("req-1"), log_scope(task_id=1):
        record = json.loads(emit(JsonFormatter(), "the other task", extra={"task_id": 2}))
    assert (record["task_id"], record["correlation_id"]) == (2, "req-1")


def test_outside_any_scope_a_record_has_no_context_fields():
    record = json.loads(emit(JsonFormatter(), "nothing in hand"))
    assert not {"correlation_id", "event_id", "task_id", "celery_task_id"} & set(record)


def test_the_plain_format_appends_the_fields_the_message_does_not_name():
    with correlation_scope("req-1"), log_scope(event_id="e-1", task_id=42):
        line = emit(PlainFormatter(), "processed in 1.0 ms event_id=e-1")
    assert line.rstrip().endswith("INFO tests.logging processed in 1.0 ms event_id=e-1 correlation_id=req-1 task_id=42")


def test_a_scope_restores_the_outer_context_and_a_bound_field_ends_with_its_scope():
    with log_scope(task_id=1):
        with log_scope(event_id="e-2"):
            bind_log_context(task_id=3)
            assert dict(current_log_context()) == {"task_id": 3, "event_id": "e-2"}
        assert dict(current_log_context()) == {"task_id": 1}
    assert dict(current_log_context()) == {}


def test_celerys_received_line_carries_the_event_fields_from_the_message():
    envelope = {"event_id": "0b5e", "event_type": "TaskSubmittedEvent", "correlation_id": "req-7",
                "payload": {"task_id": 7, "photo": "x" * 3000}}
    whole = json.dumps({"event": envelope}, separators=(",", ":"))
    for kwargsrepr in (whole, whole[:2000]):  # the producer cuts it at 2000 characters
        context = {"id": "0b5e", "name": "TaskSubmittedEvent", "args": "()", "kwargs": kwargsrepr, "eta": None}
        out = emit(JsonFormatter(), "Task %(name)s[%(id)s] received", context, logger="celery.worker.strategy",
                   extra={"data": context})
        record = json.loads(out)
        assert record["message"] == "Task TaskSubmittedEvent[0b5e] received"
        assert (record["celery_task_id"], record["event_id"], record["correlation_id"], record["task_id"]) == (
            "0b5e", "0b5e", "req-7", 7)
        assert "data" not in record  # Celery's copy of the arguments is left out


def test_log_format_is_json_or_plain_and_anything_else_is_refused(monkeypatch):
    monkeypatch.setenv("LOG_FORMAT", "Plain")
    assert log_format() == "plain"
    monkeypatch.delenv("LOG_FORMAT")
    assert log_format() == "json"

    out = subprocess.run(
        [sys.executable, "-c", "import fitness.settings"], cwd=ROOT, env=subprocess_env(LOG_FORMAT="xml"),
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode != 0
    assert "LOG_FORMAT must be json or plain, not 'xml'" in out.stderr


def test_gunicorns_lines_are_json_and_its_access_lines_carry_the_request_id(monkeypatch):
    monkeypatch.setenv("LOG_FORMAT", "json")
    config = Config()
    config.set("accesslog", "-")
    gunicorn_log = GunicornLogger(config)
    stream = io.StringIO()
    try:
        for handler in [*gunicorn_log.error_log.handlers, *gunicorn_log.access_log.handlers]:
            handler.setStream(stream)
        gunicorn_log.info("Booting worker with pid: %s", 123)
        response = SimpleNamespace(status="202 Accepted", headers=[("X-Request-ID", "req-9")], sent=51)
        request = SimpleNamespace(headers=[("X-REQUEST-ID", "req-9")])
        environ = {"REQUEST_METHOD": "POST", "RAW_URI": "/api/v1/tasks/", "PATH_INFO": "/api/v1/tasks/",
                   "SERVER_PROTOCOL": "HTTP/1.1"}
        gunicorn_log.access(response, request, environ, timedelta(milliseconds=35))
    finally:
        for log in (gunicorn_log.error_log, gunicorn_log.access_log):
            for handler in list(log.handlers):
                log.removeHandler(handler)

    boot, access = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (boot["logger"], boot["message"]) == ("gunicorn.error", "Booting worker with pid: 123")
    assert access["logger"] == "gunicorn.access" and '"POST /api/v1/tasks/ HTTP/1.1" 202' in access["message"]
    assert (access["correlation_id"], access["status"], access["method"], access["duration_ms"]) == (
        "req-9", 202, "POST", 35)


# --- X-Request-ID ----------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("supplied", ["upload-7f3a", "0b5e0a1c-8d2e-4c4b-9a43-6a1f0e2d9b11", "a" * 128])
def test_an_acceptable_client_request_id_is_kept_and_returned(supplied):
    response = Client().get("/healthz", headers={"X-Request-ID": supplied})
    assert response["X-Request-ID"] == supplied


@pytest.mark.django_db
def test_a_request_without_an_id_gets_a_new_one():
    first, second = Client().get("/healthz")["X-Request-ID"], Client().get("/healthz")["X-Request-ID"]
    assert GENERATED_ID.match(first) and GENERATED_ID.match(second) and first != second


@pytest.mark.django_db
@pytest.mark.parametrize("bad", ["two words", "a" * 129, "ünïcode", "quote\"d", "semi;colon", ""])
def test_an_unacceptable_request_id_is_replaced_by_a_new_one(bad):
    returned = Client().get("/healthz", headers={"X-Request-ID": bad})["X-Request-ID"]
    assert GENERATED_ID.match(returned) and returned != bad


@pytest.mark.django_db
def test_every_request_ends_with_one_request_line_and_a_bound_task_id_ends_with_the_request(captured):
    helper = factories.helper()
    response = factories.api_client_for(helper).get("/api/v1/tasks/987654/", HTTP_X_REQUEST_ID="req-404")

    assert response.status_code == 404 and response["X-Request-ID"] == "req-404"
    (line,) = [r for r in captured.records() if r["logger"] == "fitness.request"]
    assert line["message"].startswith("request finished: GET /api/v1/tasks/987654/ 404 in ")
    assert (line["method"], line["path"], line["status"], line["user_id"]) == ("GET", "/api/v1/tasks/987654/", 404,
                                                                              helper.pk)
    assert (line["correlation_id"], line["task_id"]) == ("req-404", 987654)
    # Django's own "Not Found" line comes after the middleware's scope and still has the id
    (django_line,) = [r for r in captured.records() if r["logger"] == "django.request"]
    assert django_line["correlation_id"] == "req-404"
    assert dict(current_log_context()) == {}


# --- one upload followed from the request through the AI worker ------------------------

@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("active_model", "relay")
def test_one_upload_is_followed_by_its_correlation_id_and_task_id_from_the_request_through_the_worker(
    probe_worker, captured
):
    request_id = f"upload-{uuid.uuid4().hex[:12]}"
    helper = factories.helper()
    client = factories.api_client_for(helper)
    photo = SimpleUploadedFile("laundry.jpg", factories.noisy_jpeg(30_000), content_type="image/jpeg")

    accepted = client.post("/api/v1/tasks/", {"photo": photo}, format="multipart", HTTP_X_REQUEST_ID=request_id)

    assert accepted.status_code == 202 and accepted["X-Request-ID"] == request_id
    task_id = accepted.json()["id"]
    event_id = str(OutboxMessage.objects.get(event_type="TaskSubmittedEvent", envelope__payload__task_id=task_id)
                   .event_id)
    wait_for(lambda: LaundryTask.objects.filter(pk=task_id, status="analyzed").exists(), timeout=90,
             what="the AI reading")
    wait_for(lambda: f"TaskSubmittedEvent[{event_id}] succeeded" in probe_worker.log(), timeout=30,
             what=f"the worker's last line of the task ({probe_worker.log_path})")

    # the web side: the accept line and the request line
    web = [r for r in captured.records() if r.get("correlation_id") == request_id]
    accept = next(r for r in web if r["logger"] == "tasks.api")
    assert accept["message"].startswith(f"task {task_id} accepted") and accept["task_id"] == task_id
    finished = next(r for r in web if r["logger"] == "fitness.request")
    assert (finished["status"], finished["task_id"], finished["user_id"]) == (202, task_id, helper.pk)

    # the worker side: every JSON line that mentions the task carries all three ids
    worker_text = probe_worker.log()
    lines = [json.loads(line) for line in worker_text.splitlines() if line.startswith("{")]
    assert lines, "the worker logs JSON lines"
    mentions = [r for r in lines if r.get("task_id") == task_id or r.get("correlation_id") == request_id
                or event_id in r["message"]]
    for record in mentions:
        assert (record.get("correlation_id"), record.get("task_id"), record.get("event_id")) == (
            request_id, task_id, event_id), record
    messages = {record["logger"]: record for record in mentions}
    assert messages["celery.worker.strategy"]["message"] == f"Task TaskSubmittedEvent[{event_id}] received"
    assert messages["ml.consumers"]["message"].startswith(f"task {task_id} read as ")
    assert messages["messaging.consumer"]["message"].startswith("processed in ")
    assert messages["messaging.consumer"]["consumer"] == "ml.read_task_photo"
    assert "succeeded" in messages["celery.app.trace"]["message"]
    for celery_line in (messages["celery.worker.strategy"], messages["celery.app.trace"]):
        assert celery_line["celery_task_id"] == event_id

    # grep <correlation id> finds the upload in the web's and the worker's logs
    found = [json.loads(line)["logger"] for line in (captured.text() + worker_text).splitlines()
             if request_id in line]
    assert {"tasks.api", "fitness.request"} <= set(found)
    assert {"ml.consumers", "messaging.consumer"} <= set(found)


def test_gunicorn_takes_the_json_logger_from_its_config_file_wherever_it_is_started():
    from gunicorn.app.base import Application

    class WebProcess(Application):  # what the `gunicorn` command builds, without serving
        def init(self, parser, opts, args):
            return {}

        def load(self):
            raise AssertionError("not served")

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        patch.setattr("sys.argv", ["gunicorn", "fitness.wsgi"])
        config = WebProcess().cfg

    assert config.logger_class is GunicornLogger


def test_make_run_logs_plain_lines_and_the_image_json_lines():
    dry_run = subprocess.run(["make", "--dry-run", "run"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "LOG_FORMAT=${LOG_FORMAT:-plain} honcho start" in dry_run.stdout, dry_run.stdout
    assert re.search(r"^ENV .*\bLOG_FORMAT=json\b", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    kubernetes = "".join(path.read_text() for path in (ROOT / "deploy" / "kubernetes").glob("*.yaml"))
    assert not re.search(r"LOG_FORMAT\W+(value:\s*)?\W*plain", kubernetes)  # the image's JSON applies
