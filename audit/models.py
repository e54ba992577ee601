from django.db import models


class EventLogEntry(models.Model):
    """One event, as the audit subscriber received it: append-only (only the retention prunes it)."""

    event_id = models.UUIDField(unique=True)
    event_type = models.CharField(max_length=100)
    schema_version = models.PositiveSmallIntegerField()
    producer = models.CharField(max_length=100)
    correlation_id = models.CharField(max_length=200, blank=True, db_index=True)
    task_id = models.PositiveIntegerField(null=True, blank=True, db_index=True,
                                          help_text="The laundry task the payload names, if any.")
    occurred_at = models.DateTimeField(
        help_text="When the producer published it (publish_event, in its transaction); RabbitMQ's confirm "
                  "is the outbox row's published_at, shown in the timeline.",
    )
    recorded_at = models.DateTimeField(auto_now_add=True, db_index=True)
    payload = models.JSONField()

    class Meta:
        ordering = ["-recorded_at", "-id"]
        verbose_name = "event log entry"
        verbose_name_plural = "event log"

    def __str__(self) -> str:
        return f"{self.event_type} v{self.schema_version} {self.event_id}"
