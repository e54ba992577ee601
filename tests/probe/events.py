from pydantic import Field

from messaging.events import Event


class ProbeRecordedEvent(Event):
    """Its consumer writes one ProbeEffect row."""

    event_type = "ProbeRecordedEvent"
    schema_version = 1
    producer = "tests"

    label: str = Field(min_length=1)


class ProbeFailingEvent(Event):
    """Its consumer appends the time of each attempt to `attempt_log`, then raises."""

    event_type = "ProbeFailingEvent"
    schema_version = 1
    producer = "tests"

    label: str
    attempt_log: str
    permanent: bool = False
