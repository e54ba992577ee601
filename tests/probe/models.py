from django.db import models


class ProbeEffect(models.Model):
    """One row per successful run of the probe handler: the effect tests count."""

    label = models.CharField(max_length=200)
    event_id = models.UUIDField()
    correlation_id = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"probe {self.label} ({self.event_id})"
