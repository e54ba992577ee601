from django.db import models
from django.db.models import Q


class OutboxMessage(models.Model):
    """An event committed together with the change that caused it (transactional outbox).

    The row is written in the caller's transaction; it is published to RabbitMQ right
    after the commit, or later by the relay when that did not work. Published rows stay
    for audit until the retention runs out.
    """

    event_id = models.UUIDField(unique=True)
    event_type = models.CharField(max_length=100)
    schema_version = models.PositiveSmallIntegerField()
    queue = models.CharField(max_length=100, help_text="The work queue the event is routed to.")
    envelope = models.JSONField(help_text="The message body, exactly as published.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    published_at = models.DateTimeField(null=True, blank=True)
    publish_attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            # The relay's scan: unpublished rows in id order, and nothing else.
            models.Index(fields=["id"], condition=Q(published_at__isnull=True), name="outbox_unpublished_idx"),
            models.Index(fields=["published_at"], name="outbox_published_at_idx"),
        ]

    def __str__(self) -> str:
        state = "published" if self.published_at else "pending"
        return f"{self.event_type} {self.event_id} ({state})"


class ProcessedEvent(models.Model):
    """A consumer's record that it handled an event: the idempotency (inbox) record.

    Written in the same transaction as the handler's effects, so an event redelivered
    after a crash either finds it (and is skipped) or finds nothing (and the earlier
    attempt left no effect behind).
    """

    consumer = models.CharField(max_length=200)
    event_id = models.UUIDField()
    event_type = models.CharField(max_length=100)
    processed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["consumer", "event_id"], name="processed_event_once_per_consumer"),
        ]

    def __str__(self) -> str:
        return f"{self.consumer}: {self.event_type} {self.event_id}"
