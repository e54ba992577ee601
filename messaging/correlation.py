"""The correlation id: the HTTP request id that an event (and its follow-ups) carries.

The web middleware sets it from `X-Request-ID` (or makes one); the base consumer sets it
from the envelope while a handler runs, so events a handler publishes carry it on.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from contextvars import ContextVar

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
