import hashlib

from django.conf import settings
from django.db import models
from django.db.models import Q

from branches.models import Branch


def hash_api_key(key: str) -> str:
    """How an equipment API key is stored: its SHA-256 (keys are random, so no salt is needed)."""
    return hashlib.sha256(key.encode()).hexdigest()


class Equipment(models.Model):
    """A washer or dryer of a branch; it reports telemetry with its own API key."""

    class Kind(models.TextChoices):
        WASHER = "washer"
        DRYER = "dryer"

    branch = models.ForeignKey(Branch, on_delete=models.PROTECT, related_name="equipment")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    name = models.SlugField(max_length=50, help_text="Unique within the branch, e.g. washer-1.")
    api_key_hash = models.CharField(max_length=64, unique=True, editable=False)
    api_key_prefix = models.CharField(
        max_length=8, editable=False, help_text="The key's first characters, to tell keys apart."
    )
    is_active = models.BooleanField(default=True, help_text="Inactive equipment is refused (403).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["branch", "name"]
        verbose_name_plural = "equipment"
        constraints = [
            models.UniqueConstraint(fields=["branch", "name"], name="equipment_name_unique_per_branch"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.branch})"


class TelemetryReading(models.Model):
    """One accepted reading of a piece of equipment."""

    class CycleState(models.TextChoices):
        IDLE = "idle"
        WASHING = "washing"
        RINSING = "rinsing"
        SPINNING = "spinning"
        DRYING = "drying"
        COOLING = "cooling"
        FINISHED = "finished"

    equipment = models.ForeignKey(Equipment, on_delete=models.CASCADE, related_name="readings")
    recorded_at = models.DateTimeField(help_text="When the machine took the reading.")
    received_at = models.DateTimeField(auto_now_add=True)
    error_code = models.CharField(max_length=16, blank=True, help_text="Empty when there was none.")
    temperature_c = models.FloatField(null=True, blank=True)
    vibration_g = models.FloatField(null=True, blank=True)
    door_open = models.BooleanField(null=True, blank=True)
    cycle_state = models.CharField(max_length=20, choices=CycleState.choices, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["equipment", "-recorded_at"], name="reading_equipment_time_idx"),
            # The prune's scan (monitoring/retention.py): the oldest received first.
            models.Index(fields=["received_at"], name="reading_received_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.equipment.name} at {self.recorded_at:%Y-%m-%d %H:%M:%S}"


class Fault(models.Model):
    """A tripped fault rule. At most one fault per equipment and rule is open at a time."""

    class Severity(models.TextChoices):
        INFO = "info"
        WARNING = "warning"
        CRITICAL = "critical"

    equipment = models.ForeignKey(Equipment, on_delete=models.PROTECT, related_name="faults")
    rule = models.CharField(max_length=50, help_text="The rule that tripped: error:<code> or a threshold's name.")
    code = models.CharField(max_length=50)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    message = models.CharField(max_length=300)
    detected_at = models.DateTimeField(help_text="recorded_at of the reading that tripped the rule.")
    opened_at = models.DateTimeField(auto_now_add=True)
    acknowledged_at = models.DateTimeField(
        null=True, blank=True, help_text="When the owner said they are on it; the fault stays open."
    )
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            # The guard against alert floods: a machine that reports the same error every
            # second opens one fault. Inserts race on this index, never on a prior SELECT.
            models.UniqueConstraint(
                fields=["equipment", "rule"], condition=Q(resolved_at__isnull=True), name="fault_one_open_per_rule"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} on {self.equipment.name} ({self.severity}, {self.state})"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None

    @property
    def state(self) -> str:
        """open, acknowledged (still open) or resolved."""
        if self.resolved_at is not None:
            return "resolved"
        return "acknowledged" if self.acknowledged_at is not None else "open"
