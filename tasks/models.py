import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


def photo_path(task: "LaundryTask", filename: str) -> str:
    # A fresh name per upload: a client's file name never becomes a storage path.
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else "bin"
    return f"tasks/{task.branch_id}/{uuid.uuid4().hex}.{extension}"


class LaundryTask(models.Model):
    """A helper's laundry job: a photo the AI reads and the branch owner confirms."""

    class Status(models.TextChoices):
        SUBMITTED = "submitted", "submitted"
        ANALYZING = "analyzing", "analyzing"
        ANALYZED = "analyzed", "analyzed"
        FAILED = "failed", "failed"
        CONFIRMED = "confirmed", "confirmed"

    branch = models.ForeignKey("branches.Branch", on_delete=models.PROTECT, related_name="tasks")
    helper = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="laundry_tasks")
    photo = models.FileField(upload_to=photo_path, max_length=300)
    photo_sha256 = models.CharField(max_length=64)
    photo_size = models.PositiveIntegerField()
    photo_content_type = models.CharField(max_length=50)
    note = models.TextField(blank=True, max_length=1000)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.SUBMITTED, db_index=True)
    failure_reason = models.TextField(blank=True)
    # NULL, not "", when the client sent no key: the unique constraint below skips NULLs.
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    # Set once, when the branch owner confirms (or corrects) the AI reading.
    confirmed_labels = models.JSONField(null=True, blank=True, help_text="The labels the owner confirmed.")
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="confirmed_tasks"
    )
    confirmed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["helper", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="laundry_task_idempotency_key_per_helper",
            ),
        ]

    def __str__(self) -> str:
        return f"task {self.pk} ({self.status})"


class Reading(models.Model):
    """What the AI model read from a task's photo, and which model version read it."""

    task = models.OneToOneField(LaundryTask, on_delete=models.CASCADE, related_name="reading")
    labels = models.JSONField(help_text='e.g. {"garment": "shirt", "condition": "stained"}')
    confidences = models.JSONField(help_text="the model's probability for each label it chose")
    model_version = models.CharField(max_length=50)
    inference_ms = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"reading of task {self.task_id} by {self.model_version}"
