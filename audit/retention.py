"""The audit trail's retention (see messaging/retention.py): the event log, by the time each
event was recorded (EVENT_LOG_RETENTION_DAYS). Append-only otherwise."""

from audit.models import EventLogEntry
from messaging.retention import PruneTarget, register

register(PruneTarget(
    name="event-log", model=EventLogEntry, retention_setting="EVENT_LOG_RETENTION_DAYS",
    time_field="recorded_at",
    description="the audit trail's event log (every event of every type)",
))
