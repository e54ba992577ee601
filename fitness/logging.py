"""Logs: one JSON object per line in every process, with the fields that follow an upload.

Every record that reaches the console handler passes `ContextFilter`, which adds what is
known about the work in hand:

* `correlation_id`: the HTTP request's X-Request-ID (messaging.middleware), carried by
  every event the request caused and by the events their handlers published;
* `event_id`, `event_type`, `consumer`: the event a consumer is handling;
* `task_id`: the LaundryTask (the task API binds it for its request; a consumer takes it
  from its event's payload);
* `celery_task_id`: the Celery task in hand (for an event consumer, the event's id).

A field a call site passes with `extra=` wins; then the current context
(messaging.correlation); then, in a Celery worker, the task message in hand, which also
covers Celery's own "Task …[…] received/succeeded" lines.

`LOG_FORMAT` picks the formatter: `json` (python-json-logger) or `plain` (a human line
with the same fields appended as key=value). Celery workers and beat use Django's LOGGING
(`configure_celery_logging`, connected in fitness.celery); gunicorn's own lines go
through `GunicornLogger` (the logger class that gunicorn.conf.py sets).
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import re
from collections.abc import Mapping
from typing import Any

from celery._state import get_current_task
from celery.utils.log import get_multiprocessing_logger
from gunicorn.glogging import Logger as _GunicornBaseLogger
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from messaging.correlation import current_correlation_id, current_log_context

LOG_FORMATS = ("json", "plain")
# The context fields, in the order the plain format appends them.
CONTEXT_FIELDS = ("correlation_id", "event_id", "event_type", "consumer", "task_id", "celery_task_id")


def log_format() -> str:
    """The LOG_FORMAT of this process: the settings' LOG_FORMAT, and gunicorn's master's (it has no settings)."""
    value = os.environ.get("LOG_FORMAT", "json").strip().lower() or "json"
    if value not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be {' or '.join(LOG_FORMATS)}, not {value!r}")
    return value


def envelope_log_fields(envelope: Any) -> dict[str, Any]:
    """The log fields of an event envelope (a dict as on the wire); {} for anything else."""
    if not isinstance(envelope, Mapping):
        return {}
    payload = envelope.get("payload")
    task_id = payload.get("task_id") if isinstance(payload, Mapping) else None
    fields = {
        "event_id": envelope.get("event_id"),
        "event_type": envelope.get("event_type"),
        "correlation_id": envelope.get("correlation_id"),
        "task_id": task_id if isinstance(task_id, int) else None,
    }
    return {key: str(value) if key != "task_id" else value for key, value in fields.items() if value}


# Celery's "received" line carries the message's kwargsrepr: the producer's JSON of
# {"event": envelope} (messaging.broker), cut at 2000 characters, or Python's repr from
# other producers. Parsed when whole; otherwise the scalar fields are picked out.
_REPR_FIELD = re.compile(r"""["'](event_id|event_type|correlation_id)["']:\s*["']([^"']+)["']""")
_REPR_TASK_ID = re.compile(r"""["']task_id["']:\s*(\d+)""")


def _fields_from_kwargs_repr(text: Any) -> dict[str, Any]:
    if not isinstance(text, str) or "event" not in text:
        return {}
    try:
        kwargs = json.loads(text)
    except ValueError:
        fields: dict[str, Any] = dict(_REPR_FIELD.findall(text))
        task_id = _REPR_TASK_ID.search(text)
        if task_id:
            fields["task_id"] = int(task_id.group(1))
        return fields
    return envelope_log_fields(kwargs.get("event")) if isinstance(kwargs, dict) else {}


def _celery_fields(record: logging.LogRecord) -> dict[str, Any]:
    """What the Celery task in hand tells: in a pool process, its request; else Celery's record data."""
    task = get_current_task()
    request = getattr(task, "request", None) if task is not None else None
    if request is not None and request.id:
        kwargs = request.kwargs if isinstance(request.kwargs, dict) else {}
        fields = envelope_log_fields(kwargs.get("event"))
        fields["celery_task_id"] = request.id
        consumer = getattr(task, "consumer_name", "")
        if consumer and "event_id" in fields:
            fields["consumer"] = consumer
        return fields
    # The worker's main process: Celery passes "received" lines' context as `extra={"data": …}`.
    data = getattr(record, "data", None)
    if isinstance(data, Mapping) and data.get("id"):
        fields = _fields_from_kwargs_repr(data.get("kwargs"))
        fields["celery_task_id"] = str(data["id"])
        return fields
    return {}


def _gunicorn_access_fields(record: logging.LogRecord) -> dict[str, Any]:
    """gunicorn's access lines: its atoms are the record's args (see gunicorn.glogging)."""
    atoms = record.args
    if record.name != "gunicorn.access" or not isinstance(atoms, Mapping):
        return {}
    request_id = atoms.get("{x-request-id}o")  # the response header CorrelationIdMiddleware sets
    status = atoms.get("s")
    return {
        "correlation_id": request_id if request_id != "-" else None,
        "method": atoms.get("m"), "path": atoms.get("U"), "duration_ms": atoms.get("M"),
        "status": int(status) if str(status).isdigit() else status,
    }


class ContextFilter(logging.Filter):
    """Adds the context fields (see the module's docstring) to every record; never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        correlation_id = current_correlation_id()
        if correlation_id is None:
            # Django logs a request's 4xx/5xx after the middleware's scope has ended.
            correlation_id = getattr(getattr(record, "request", None), "correlation_id", None)
        context = {"correlation_id": correlation_id, **current_log_context()}
        for fields in (context, _celery_fields(record), _gunicorn_access_fields(record)):
            for key, value in fields.items():
                if value is not None and getattr(record, key, None) is None:
                    setattr(record, key, value)
        return True


class JsonFormatter(_JsonFormatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, process, message, then the fields.

    The message stays the human sentence (key=value parts included), so a plain `grep`
    finds what it found before the logs were JSON; non-ASCII text stays readable.
    """

    def __init__(self, **options: Any) -> None:
        options.setdefault("fmt", ["levelname", "name", "process", "message"])
        options.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        options.setdefault("timestamp", "time")
        # Celery's `data` repeats the message's arguments (and the whole event).
        options.setdefault("reserved_attrs", [*RESERVED_ATTRS, "data"])
        options.setdefault("json_ensure_ascii", False)
        super().__init__(**options)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {"time": log_data.pop("time"), **log_data}


class PlainFormatter(logging.Formatter):
    """The human line, with the context fields that the message does not already name appended."""

    def __init__(self, fmt: str = "%(asctime)s %(levelname)s %(name)s %(message)s", **options: Any) -> None:
        super().__init__(fmt, **options)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        extra = [
            f"{key}={value}" for key in CONTEXT_FIELDS
            if (value := getattr(record, key, None)) is not None and f"{key}=" not in record.message
        ]
        return " ".join([line, *extra])


def formatter(kind: str | None = None) -> logging.Formatter:
    return JsonFormatter() if (kind or log_format()) == "json" else PlainFormatter()


def configure_celery_logging(loglevel: int | None = None, **_: Any) -> None:
    """Celery's `setup_logging` signal: workers and beat log through Django's LOGGING.

    Connected, it also stops Celery from installing its own root handler and format. The
    more verbose of LOG_LEVEL and Celery's --loglevel applies.
    """
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    root = logging.getLogger()
    if isinstance(loglevel, int) and loglevel and loglevel < root.level:
        root.setLevel(loglevel)
    # The prefork pool's supervisor (billiard) logs "Process … exited with …" only once
    # its logger exists, which Celery's own set-up would have created; at ERROR, as Celery does.
    multiprocessing_logger = get_multiprocessing_logger()
    multiprocessing_logger.propagate = True
    multiprocessing_logger.setLevel(logging.ERROR)


class GunicornLogger(_GunicornBaseLogger):
    """gunicorn's own lines (boot, worker timeouts, access lines if enabled) in the app's format.

    Its access lines, when enabled, carry the request's correlation id from the response's
    X-Request-ID; the app's "request finished" line (messaging.middleware) has more.
    """

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                if getattr(handler, "_gunicorn", False):
                    handler.setFormatter(formatter())
                    handler.addFilter(ContextFilter())
