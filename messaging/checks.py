"""System checks of the retention settings (run by every manage.py command and at start).

The dedup window (PROCESSED_EVENT_RETENTION_DAYS) must outlast the longest a copy of an event
can still arrive after it was first handled: the dead-letter replay window plus the longest
retry schedule. Shorter, and a replay could find no record and apply its effect again.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.checks import Error, register

RETENTION_SETTINGS = (
    "PROCESSED_EVENT_RETENTION_DAYS", "DEAD_LETTER_REPLAY_MAX_AGE_DAYS", "TELEMETRY_RETENTION_DAYS",
    "NOTIFICATION_RETENTION_DAYS", "PUSH_DELIVERY_RETENTION_DAYS", "DEAD_LETTER_RETENTION_DAYS",
    "OUTBOX_RETENTION_DAYS", "EVENT_LOG_RETENTION_DAYS", "EVENT_ACTIVITY_RETENTION_DAYS", "RETENTION_BATCH_SIZE",
)


def longest_retry_schedule() -> timedelta:
    """How long a consumer keeps retrying an event before it is dead-lettered: the longest
    retry policy of any work queue (fitness/topology.py), all its countdowns summed."""
    from fitness import topology

    return timedelta(seconds=max(topology.retry_policy(queue.name).total_delay for queue in topology.WORK_QUEUES))


def dedup_window_needed() -> timedelta:
    """The shortest ProcessedEvent retention that is safe with the current settings."""
    return timedelta(days=settings.DEAD_LETTER_REPLAY_MAX_AGE_DAYS) + longest_retry_schedule()


@register("retention")
def check_retention(app_configs=None, **kwargs) -> list[Error]:
    errors: list[Error] = []
    for name in RETENTION_SETTINGS:
        value = getattr(settings, name)
        if not isinstance(value, int) or value < 1:
            errors.append(Error(f"{name} must be a whole number of at least 1, not {value!r}.", id="retention.E001"))
    if errors:
        return errors
    dedup = timedelta(days=settings.PROCESSED_EVENT_RETENTION_DAYS)
    needed = dedup_window_needed()
    if dedup < needed:
        errors.append(Error(
            f"PROCESSED_EVENT_RETENTION_DAYS ({settings.PROCESSED_EVENT_RETENTION_DAYS}) is shorter than the "
            f"dead-letter replay window (DEAD_LETTER_REPLAY_MAX_AGE_DAYS, {settings.DEAD_LETTER_REPLAY_MAX_AGE_DAYS}) "
            f"plus the longest retry schedule ({longest_retry_schedule().total_seconds():.0f} s): a replayed event "
            "could find its processed record pruned and apply its effect twice.",
            hint="Raise PROCESSED_EVENT_RETENTION_DAYS or lower DEAD_LETTER_REPLAY_MAX_AGE_DAYS.",
            id="retention.E002",
        ))
    for name in ("PUSH_DELIVERY_RETENTION_DAYS", "NOTIFICATION_RETENTION_DAYS"):
        if getattr(settings, name) < settings.PROCESSED_EVENT_RETENTION_DAYS:
            errors.append(Error(
                f"{name} ({getattr(settings, name)}) is shorter than the dedup window "
                f"(PROCESSED_EVENT_RETENTION_DAYS, {settings.PROCESSED_EVENT_RETENTION_DAYS}): a replayed event "
                "consults these rows to push at most once per device.",
                id="retention.E003",
            ))
    reading_age = timedelta(seconds=settings.MONITORING_MAX_READING_AGE_SECONDS)
    if timedelta(days=settings.TELEMETRY_RETENTION_DAYS) < reading_age:
        errors.append(Error(
            f"TELEMETRY_RETENTION_DAYS ({settings.TELEMETRY_RETENTION_DAYS}) is shorter than the oldest reading "
            f"the telemetry API accepts (MONITORING_MAX_READING_AGE_SECONDS, {reading_age.days} days): "
            "an accepted reading would be pruned at once.",
            id="retention.E004",
        ))
    return errors
