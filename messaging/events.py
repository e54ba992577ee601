"""The event envelope and the registry of event contracts.

Every message body is an envelope::

    {"event_id": UUID, "event_type": "TaskSubmittedEvent", "schema_version": 1,
     "occurred_at": "2026-11-25T10:00:00+00:00", "producer": "tasks",
     "correlation_id": "…request id…", "payload": {…}}

A contract is a small pydantic model of the payload with its type, version and producer
as class variables (see `messaging.contracts`). Producers build contract instances and
hand them to `publish_event`; consumers get them back parsed and validated. Changing a
payload means a new class with the next `schema_version`; the old one stays registered
for as long as messages of that version may still be in flight.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from messaging.errors import InvalidEvent, UnknownEvent

_REGISTRY: dict[tuple[str, int], type[Event]] = {}


class Event(BaseModel):
    """Base of every event contract: the payload fields, plus the class variables below."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1
    producer: ClassVar[str]

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "event_type" not in cls.__dict__:
            return  # an abstract intermediate class
        key = (cls.event_type, cls.schema_version)
        existing = _REGISTRY.get(key)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise TypeError(f"{key} is already registered by {existing.__module__}.{existing.__qualname__}")
        _REGISTRY[key] = cls


class Envelope(BaseModel):
    """The versioned JSON wrapper around every payload."""

    # Unknown envelope fields are ignored, so a newer producer can add metadata.
    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: uuid.UUID
    event_type: str = Field(min_length=1)
    schema_version: int = Field(ge=1)
    occurred_at: AwareDatetime
    producer: str = Field(min_length=1)
    correlation_id: str | None = None
    payload: dict[str, Any]

    @classmethod
    def wrap(cls, event: Event, *, correlation_id: str | None) -> Envelope:
        return cls(
            event_id=uuid.uuid4(),
            event_type=event.event_type,
            schema_version=event.schema_version,
            occurred_at=datetime.now(UTC),
            producer=event.producer,
            correlation_id=correlation_id,
            payload=event.model_dump(mode="json"),
        )

    def as_message_body(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def contract_for(event_type: str, schema_version: int) -> type[Event]:
    try:
        return _REGISTRY[(event_type, schema_version)]
    except KeyError:
        known = sorted(v for (t, v) in _REGISTRY if t == event_type)
        detail = f"known versions: {known}" if known else "no such event type"
        raise UnknownEvent(f"{event_type} v{schema_version} is not a registered contract ({detail})") from None


def registered_contracts() -> list[type[Event]]:
    return [cls for _, cls in sorted(_REGISTRY.items())]


def parse_message(body: Any) -> tuple[Envelope, Event]:
    """Validate a message body into its envelope and its typed payload.

    Raises InvalidEvent or UnknownEvent (both permanent: retrying cannot fix them).
    """
    try:
        envelope = Envelope.model_validate(body)
    except ValidationError as exc:
        raise InvalidEvent(f"not an event envelope: {_summarise(exc)}") from exc
    contract = contract_for(envelope.event_type, envelope.schema_version)
    try:
        event = contract.model_validate(envelope.payload)
    except ValidationError as exc:
        raise InvalidEvent(
            f"{envelope.event_type} v{envelope.schema_version} {envelope.event_id}: payload invalid: {_summarise(exc)}"
        ) from exc
    return envelope, event


def _summarise(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or '(body)'}: {error['msg']}" for error in exc.errors()
    )
