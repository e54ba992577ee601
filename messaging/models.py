from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import F, Q


class OutboxQuerySet(models.QuerySet):
    def pending(self) -> "OutboxQuerySet":
        """Rows still to be published: neither published nor discarded."""
        return self.filter(published_at__isnull=True, discarded_at__isnull=True)

    def failing(self) -> "OutboxQuerySet":
        """Pending rows RabbitMQ refused at least once (each waits for its `next_attempt_at`)."""
        return self.pending().filter(refusals__gt=0)


class OutboxMessage(models.Model):
    """An event committed together with the change that caused it (transactional outbox).

    The row is written in the caller's transaction (with a NOTIFY that wakes the relay on
    commit); the relay (`manage.py relay_outbox`) publishes it to RabbitMQ. A row RabbitMQ refuses
    (unroutable, nacked) backs off alone until `next_attempt_at`; an operator may retry or
    discard it (`manage.py outbox`). Published rows stay for audit until the retention runs
    out; discarded rows stay, never published.
    """

    event_id = models.UUIDField(unique=True)
    event_type = models.CharField(max_length=100)
    schema_version = models.PositiveSmallIntegerField()
    queue = models.CharField(
        max_length=100, help_text="The routing key it is published with: its event type (each subscriber gets a copy).",
    )
    envelope = models.JSONField(help_text="The message body, exactly as published.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    published_at = models.DateTimeField(null=True, blank=True)
    publish_attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    refusals = models.PositiveIntegerField(
        default=0, help_text="Times RabbitMQ refused this message (returned as unroutable, nacked, a channel error).",
    )
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="After a refusal: the relay leaves the row alone until then.",
    )
    retried_at = models.DateTimeField(null=True, blank=True, help_text="When an operator last asked to retry it now.")
    retried_by = models.CharField(max_length=150, blank=True)
    discarded_at = models.DateTimeField(null=True, blank=True, help_text="Set: the row is never published.")
    discarded_by = models.CharField(max_length=150, blank=True)
    discard_reason = models.TextField(blank=True)

    objects = OutboxQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        indexes = [
            # The relay's scan: unpublished rows in id order, and nothing else.
            models.Index(fields=["id"], condition=Q(published_at__isnull=True), name="outbox_unpublished_idx"),
            models.Index(fields=["published_at"], name="outbox_published_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} ({self.state})"

    @property
    def state(self) -> str:
        """`published`, `discarded`, `refused` (backing off after a refusal) or `pending`."""
        if self.published_at:
            return "published"
        if self.discarded_at:
            return "discarded"
        return "refused" if self.refusals else "pending"


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
        # The prune's scan (messaging/retention.py): the oldest records first, by this index.
        indexes = [models.Index(fields=["processed_at"], name="processed_event_age_idx")]

    def __str__(self) -> str:
        return f"{self.consumer}: {self.event_type} {self.event_id}"


class DeadLetterQuerySet(models.QuerySet):
    def still_dead_lettered(self) -> "DeadLetterQuerySet":
        """The rows whose `status` is `dead-lettered`: the same rule, in SQL."""
        return self.filter(
            Q(deaths__gt=F("replays") + F("purges")) | Q(purged_at__isnull=True, replayed_at__isnull=True)
        )


class DeadLetter(models.Model):
    """The history of one event's dead-lettering from one work queue.

    RabbitMQ holds the dead letter itself in `<queue>.dlq` until an operator replays or
    purges it (`manage.py dlq`); this row is the record that outlives both: written by the
    consumer when it gives up (`error`) and by the dead-letter archiver when the copy of
    the dead letter arrives (`envelope`, `reason`, `deaths`, times), and updated by replays
    and purges. One row per (queue, event): an event replayed and dead-lettered again
    counts another death on the same row. A message that is not an event envelope (no
    event id) is keyed by an id derived from its body (`messaging.dead_letters.messages.body_id`).
    """

    queue = models.CharField(max_length=100, help_text="The work queue the event died in.")
    event_id = models.CharField(max_length=100, help_text="The envelope's event_id (also the Celery task id).")
    event_type = models.CharField(max_length=100, blank=True)
    consumer = models.CharField(max_length=200, blank=True)
    envelope = models.JSONField(
        null=True, blank=True, help_text="The event as it was dead-lettered (the message body if not an envelope)."
    )
    # The message itself as its latest death left it, byte for byte: what `manage.py dlq
    # show` displays (it browses this history, never the `.dlq`, so browsing redelivers nothing).
    body = models.BinaryField(null=True, blank=True, help_text="The message body, exactly as dead-lettered.")
    content_type = models.CharField(max_length=100, blank=True)
    content_encoding = models.CharField(max_length=50, blank=True)
    headers = models.JSONField(
        null=True, blank=True, encoder=DjangoJSONEncoder,
        help_text="The message's AMQP headers at its latest death (x-death: RabbitMQ's record of its deaths).",
    )
    reason = models.CharField(
        max_length=50, blank=True,
        help_text="RabbitMQ's death reason: rejected (the consumer gave up) or delivery_limit (workers died).",
    )
    error = models.TextField(blank=True, help_text="Why the consumer gave up, as it logged it.")
    attempts = models.PositiveIntegerField(default=0, help_text="Deliveries before the last death.")
    deaths = models.PositiveIntegerField(default=0, help_text="Times the event was dead-lettered from this queue.")
    death_key = models.CharField(max_length=100, blank=True, editable=False)
    first_dead_at = models.DateTimeField(null=True, blank=True)
    last_dead_at = models.DateTimeField(null=True, blank=True, db_index=True)
    failed_at = models.DateTimeField(null=True, blank=True, help_text="When the consumer recorded its error.")
    replays = models.PositiveIntegerField(default=0)
    replayed_at = models.DateTimeField(null=True, blank=True)
    replayed_by = models.CharField(max_length=150, blank=True)
    purges = models.PositiveIntegerField(default=0)
    purged_at = models.DateTimeField(null=True, blank=True)
    purged_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = DeadLetterQuerySet.as_manager()

    class Meta:
        ordering = ["-last_dead_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["queue", "event_id"], name="dead_letter_once_per_queue_and_event"),
        ]
        indexes = [models.Index(fields=["event_type", "last_dead_at"], name="dead_letter_type_idx")]

    def __str__(self) -> str:
        return f"{self.event_type or 'message'} {self.event_id} in {self.queue}.dlq ({self.status})"

    @property
    def status(self) -> str:
        """What became of it: still `dead-lettered`, `replayed`, or `purged`.

        Counted rather than compared by time, so an archiver that runs behind a replay or
        purge still ends with the right state.
        """
        if self.deaths > self.replays + self.purges:
            return "dead-lettered"
        if self.purged_at and (self.replayed_at is None or self.purged_at >= self.replayed_at):
            return "purged"
        return "replayed" if self.replayed_at else "dead-lettered"


class EventActivity(models.Model):
    """What happened to one event in one subscriber: written by the consumer base
    (`messaging.consumers`), append-only. With the outbox row, the audit log
    (`audit.EventLogEntry`) and the dead letters' history it makes an event's timeline."""

    class Kind(models.TextChoices):
        PROCESSED = "processed"
        SKIPPED = "skipped", "skipped (already processed)"
        RETRIED = "retried", "failed, retried"
        DEAD_LETTERED = "dead_lettered", "failed, dead-lettered"

    event_id = models.UUIDField(db_index=True)
    event_type = models.CharField(max_length=100)
    correlation_id = models.CharField(max_length=200, blank=True, db_index=True)
    task_id = models.PositiveIntegerField(null=True, blank=True, db_index=True,
                                          help_text="The laundry task the event's payload names, if any.")
    subscriber = models.CharField(max_length=200, help_text="The consumer's name.")
    queue = models.CharField(max_length=100, blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    attempt = models.PositiveIntegerField(default=1, help_text="1 for the first delivery, 2 for the first retry, …")
    duration_ms = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="The worker (Celery hostname) that ran it.")
    at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["at", "id"]
        verbose_name_plural = "event activities"

    def __str__(self) -> str:
        return f"{self.subscriber} {self.kind} {self.event_type} {self.event_id}"
