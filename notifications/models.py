from django.conf import settings
from django.db import models
from django.db.models import Q


class DeviceToken(models.Model):
    """A phone or browser of a user that can receive pushes (an FCM registration token)."""

    class Platform(models.TextChoices):
        ANDROID = "android"
        IOS = "ios"
        WEB = "web"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="device_tokens")
    token = models.CharField(max_length=1024, unique=True)
    platform = models.CharField(max_length=10, choices=Platform.choices)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, help_text="The last time the app registered it.")
    deactivated_at = models.DateTimeField(null=True, blank=True)
    deactivation_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user"], condition=Q(is_active=True), name="device_active_by_user_idx")]

    def __str__(self) -> str:
        return f"{self.platform} device of {self.user} ({'active' if self.is_active else 'inactive'})"


class Notification(models.Model):
    """One notification to one user: the log owners see in the admin and users through the API.

    At most one per recipient and `key` (what it is about: a fault, a branch offer), so a
    redelivered event or a republished offer never notifies anyone twice.
    """

    class Kind(models.TextChoices):
        EQUIPMENT_FAULT = "equipment_fault"
        RECOMMENDATION = "recommendation"
        TASK_ANALYZED = "task_analyzed"

    class Status(models.TextChoices):
        PENDING = "pending", "pending (push not yet accepted)"
        SENT = "sent", "sent (at least one device accepted the push)"
        STORED = "stored", "stored (in-app only: inbox backend, or no active device)"
        FAILED = "failed", "failed (no device accepted the push)"

    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=30, choices=Kind.choices)
    key = models.CharField(max_length=100, help_text="What it is about, e.g. equipment_fault:12, recommendation:3.")
    event_id = models.UUIDField(help_text="The event that caused it.")
    title = models.CharField(max_length=200)
    body = models.TextField()
    data = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="Push attempts of its most-tried device.")
    provider_message_id = models.CharField(max_length=300, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["recipient", "key"], name="notification_once_per_recipient_and_key"),
        ]
        indexes = [
            models.Index(fields=["recipient", "-created_at"], name="notification_inbox_idx"),
            models.Index(fields=["key"], name="notification_key_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} to {self.recipient}: {self.title}"


class PushDelivery(models.Model):
    """The push of one notification to one device: never sent again once FCM accepted it.

    `sending` is committed before the request to FCM, with the `claim` whose PostgreSQL
    advisory lock its sender holds meanwhile; a push left `sending` by a sender that died
    (its lock is gone) is sent again: at least once, at most one extra push per device per
    crash (see `notifications.services`). `abandoned` is a push whose event ran out of
    retries (FCM was down): a replay or redelivery of the event sends it. `failed` is one
    FCM refused as it is: it stays dropped.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending", "sending (the request to FCM is under way)"
        SENT = "sent"
        UNREGISTERED = "unregistered", "unregistered (device deactivated)"
        FAILED = "failed", "failed (FCM refused it)"
        ABANDONED = "abandoned", "abandoned (retries exhausted; replaying the event sends it)"

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="deliveries")
    device = models.ForeignKey(DeviceToken, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=15, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    provider_message_id = models.CharField(max_length=300, blank=True)
    error = models.TextField(blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    claim = models.IntegerField(
        null=True, blank=True, editable=False,
        help_text="While sending: the advisory lock its sender holds (gone with the sender).",
    )

    class Meta:
        verbose_name_plural = "push deliveries"
        constraints = [
            models.UniqueConstraint(fields=["notification", "device"], name="push_once_per_notification_and_device"),
        ]
        indexes = [
            models.Index(fields=["notification"], condition=Q(status__in=["pending", "sending"]),
                         name="push_unsettled_idx"),
        ]

    def __str__(self) -> str:
        return f"push of notification {self.notification_id} to device {self.device_id}: {self.status}"
