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


class ProbeCrashEvent(Event):
    """Its consumer kills its own worker process (`os._exit`): a poison message."""

    event_type = "ProbeCrashEvent"
    schema_version = 1
    producer = "tests"

    label: str


class ProbeSlowEvent(Event):
    """Its consumer takes `seconds`, then writes one ProbeEffect row (work in flight at a shutdown)."""

    event_type = "ProbeSlowEvent"
    schema_version = 1
    producer = "tests"

    label: str
    seconds: float


class ProbeFixableEvent(Event):
    """Its consumer fails for good until the file `fixed_when` exists, then writes a ProbeEffect:
    a bug that is fixed after its events were dead-lettered."""

    event_type = "ProbeFixableEvent"
    schema_version = 1
    producer = "tests"

    label: str
    fixed_when: str


class ProbeExternalEvent(Event):
    """Its consumer (atomic=False) records whether it ran inside a transaction."""

    event_type = "ProbeExternalEvent"
    schema_version = 1
    producer = "tests"

    label: str


class ProbeForwardedEvent(Event):
    """Its consumer publishes a ProbeRecordedEvent per label in `labels`, the ones in
    `in_savepoint` inside a savepoint that is rolled back when `roll_back` (an event that
    publishes another, as the AI's reading publishes TaskAnalyzedEvent)."""

    event_type = "ProbeForwardedEvent"
    schema_version = 1
    producer = "tests"

    labels: list[str]
    in_savepoint: list[str] = []
    roll_back: bool = False
