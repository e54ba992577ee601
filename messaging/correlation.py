"""The correlation id: the HTTP request id that an event (and its follow-ups) carries.

The web middleware sets it from `X-Request-ID` (or makes one); the base consumer sets it
from the envelope while a handler runs, so events a handler publishes carry it on.

Beside it, the log context: the other fields every log line of the work in hand carries
(`event_id`, `event_type`, `consumer`, `task_id`; see fitness.logging). The base consumer
opens a `log_scope` around a handler, the middleware one around a request, and code that
learns a field inside one (the task API, once it knows the task) binds it there.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

_current: ContextVar[str | None] = ContextVar("correlation_id", default=None)

# What we accept from a client's X-Request-ID: short and printable, so it is safe in logs.
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def current_correlation_id() -> str | None:
    return _current.get()


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def acceptable(value: str | None) -> bool:
    return bool(value) and bool(_ACCEPTABLE.match(value))


@contextlib.contextmanager
def correlation_scope(correlation_id: str | None) -> Iterator[None]:
    token = _current.set(correlation_id)
    try:
        yield
    finally:
        _current.reset(token)


_log_context: ContextVar[Mapping[str, Any]] = ContextVar("log_context", default=MappingProxyType({}))


def current_log_context() -> Mapping[str, Any]:
    return _log_context.get()


@contextlib.contextmanager
def log_scope(**fields: Any) -> Iterator[None]:
    """Add `fields` (None values left out) to the log context within; the outer context comes back after."""
    token = _log_context.set(_merged(fields))
    try:
        yield
    finally:
        _log_context.reset(token)


def bind_log_context(**fields: Any) -> None:
    """Add `fields` to the log context until the enclosing `log_scope` ends (call it inside one)."""
    _log_context.set(_merged(fields))


def _merged(fields: dict[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType({**_log_context.get(), **{k: v for k, v in fields.items() if v is not None}})
