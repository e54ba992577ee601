"""Trained model versions: the weights, what they were trained on, and how well they read.

No torch here (nor in anything this imports): the web process loads this module for the
admin, and it must never pay for importing torch.
"""

from django.db import models
from django.db.models import Q


class ModelVersion(models.Model):
    """One trained model: its weights in storage, its held-out metrics, and whether it reads photos.

    At most one version is active: the one the AI workers read photos with. Versions are
    never changed after training, only activated, so every stored reading can name the
    exact weights that produced it.
    """

    class Outcome(models.TextChoices):
        TRAINED = "trained", "trained (train_model)"
        PROMOTED = "promoted", "promoted by retraining"
        REJECTED = "rejected", "rejected by retraining"

    version = models.CharField(max_length=20, unique=True, help_text='"v1", "v2", ... in the order of training.')
    architecture = models.CharField(max_length=50, help_text="The network, e.g. mobilenet_v3_small.")
    image_size = models.PositiveIntegerField(help_text="Photos are resized to image_size x image_size pixels.")
    label_spaces = models.JSONField(
        help_text='The labels of each head, in the order of its outputs, e.g. {"garment": ["shirt", ...]}.'
    )
    artifact = models.FileField(upload_to="models/", max_length=300, help_text="The state dict (torch.save).")
    metrics = models.JSONField(
        default=dict,
        help_text="Held-out accuracy per head, exact-match accuracy, data sizes, epochs, training time, data source.",
    )
    is_active = models.BooleanField(default=False)
    parent = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="children",
        help_text="The version this one was fine-tuned from (retraining), if any.",
    )
    outcome = models.CharField(
        max_length=20, choices=Outcome.choices, default=Outcome.TRAINED,
        help_text="How the version came to be and what its evaluation decided.",
    )
    outcome_reason = models.TextField(blank=True, help_text="Why a retrained candidate was promoted or rejected.")
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True, help_text="When it was last made the active version.")
    notes = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=Q(is_active=True), name="ml_model_version_one_active"
            ),
        ]

    def __str__(self) -> str:
        state = "active" if self.is_active else "inactive"
        exact = self.exact_match
        accuracy = f", exact match {exact:.1%}" if exact is not None else ""
        return f"model {self.version} ({self.architecture}, {state}{accuracy})"

    @property
    def exact_match(self) -> float | None:
        """Held-out accuracy of reading every label right at once, if measured."""
        value = (self.metrics or {}).get("exact_match")
        return float(value) if value is not None else None

    def head_accuracy(self, head: str) -> float | None:
        """Held-out accuracy of one head ("garment", "condition"), if measured."""
        value = ((self.metrics or {}).get("accuracy") or {}).get(head)
        return float(value) if value is not None else None


class ModelActivation(models.Model):
    """One activation of a model version: the history that `models rollback` walks back."""

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="activations")
    previous = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        help_text="The version that was active before.",
    )
    activated_at = models.DateTimeField(auto_now_add=True, db_index=True)
    activated_by = models.CharField(max_length=200, help_text='Who or what: "retraining run 4", "admin alice", ...')
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-activated_at", "-id"]

    def __str__(self) -> str:
        return f"{self.version.version} activated by {self.activated_by}"


def training_photo_path(sample: "TrainingSample", filename: str) -> str:
    # content-addressed: the same photo confirmed twice is stored once
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else "bin"
    return f"training/{sample.photo_sha256[:2]}/{sample.photo_sha256}.{extension}"


class TrainingSample(models.Model):
    """A photo with the labels its branch owner confirmed: the data retraining learns from.

    Each sample is on one side for good: `holdout` samples only ever evaluate models (they
    never train one), `train` samples train them. The side follows from the photo's hash, so
    the same photo never ends up on both.
    """

    class Split(models.TextChoices):
        TRAIN = "train", "train"
        HOLDOUT = "holdout", "held out"

    task_id = models.PositiveBigIntegerField(unique=True, help_text="The laundry task it was confirmed on.")
    branch_id = models.PositiveBigIntegerField()
    photo = models.FileField(upload_to=training_photo_path, max_length=300, help_text="A copy of the task's photo.")
    photo_sha256 = models.CharField(max_length=64, db_index=True)
    labels = models.JSONField(help_text="The confirmed labels: the truth.")
    ai_labels = models.JSONField(help_text="What the AI had read.")
    corrected = models.BooleanField(help_text="Whether the owner changed the AI's labels.")
    source_model_version = models.CharField(max_length=20, blank=True, help_text="The version that read the photo.")
    split = models.CharField(max_length=10, choices=Split.choices, db_index=True)
    confirmed_by = models.PositiveBigIntegerField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    event_id = models.UUIDField(help_text="The TaskConfirmedEvent it came from.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"sample of task {self.task_id} ({self.split})"


class RetrainingRun(models.Model):
    """One pass of the retraining pipeline: fine-tune, evaluate on the held-out samples, decide.

    At most one run is queued and at most one is running at any time (the constraints
    below): requests that arrive while one is queued join it.
    """

    class Trigger(models.TextChoices):
        SAMPLES = "samples", "enough new samples"
        SCHEDULE = "schedule", "schedule"
        COMMAND = "command", "manage.py retrain"
        ADMIN = "admin", "admin"

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        PROMOTED = "promoted", "candidate promoted"
        REJECTED = "rejected", "candidate rejected"
        SKIPPED = "skipped", "skipped"
        FAILED = "failed", "failed"

    FINISHED = (Status.PROMOTED, Status.REJECTED, Status.SKIPPED, Status.FAILED)

    trigger = models.CharField(max_length=20, choices=Trigger.choices)
    requested_by = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Starts so far (a crashed run starts again).")
    requested_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    samples_up_to = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="The newest TrainingSample id the run used."
    )
    new_samples = models.PositiveIntegerField(default=0, help_text="Samples no earlier run had used.")
    train_size = models.PositiveIntegerField(default=0)
    holdout_size = models.PositiveIntegerField(default=0)
    baseline = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        help_text="The active version the candidate was fine-tuned from and compared with.",
    )
    candidate = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="retraining_runs"
    )
    baseline_metrics = models.JSONField(default=dict, blank=True, help_text="The baseline on the held-out samples.")
    candidate_metrics = models.JSONField(default=dict, blank=True, help_text="The candidate on the same samples.")
    reason = models.TextField(blank=True, help_text="Why it was promoted, rejected, skipped or failed.")
    seconds = models.FloatField(null=True, blank=True, help_text="Wall time of the run.")

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["status"], condition=Q(status="queued"), name="ml_retraining_one_queued"),
            models.UniqueConstraint(fields=["status"], condition=Q(status="running"), name="ml_retraining_one_running"),
        ]

    def __str__(self) -> str:
        return f"retraining run {self.pk} ({self.status})"
