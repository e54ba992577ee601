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
