"""The telemetry readings' retention (see messaging/retention.py): kept TELEMETRY_RETENTION_DAYS
after they were received, then pruned in batches by `manage.py prune` and beat."""

from messaging.retention import PruneTarget, register
from monitoring.models import TelemetryReading

register(PruneTarget(
    name="telemetry", model=TelemetryReading, retention_setting="TELEMETRY_RETENTION_DAYS",
    time_field="received_at",
    description="equipment telemetry readings, by when they were received",
))
