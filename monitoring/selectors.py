from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce

from monitoring.models import Equipment, Fault, TelemetryReading, hash_api_key


def equipment_by_api_key(*, api_key: str) -> Equipment | None:
    """The equipment an API key belongs to (active or not), or None for an unknown key."""
    return Equipment.objects.select_related("branch").filter(api_key_hash=hash_api_key(api_key)).first()


def equipment_with_state(*, equipment: QuerySet[Equipment]) -> QuerySet[Equipment]:
    """The equipment with its current state: `state_cycle`, `state_temperature_c` and
    `last_seen_at` from its newest reading (by the machine's clock, on the reading index),
    and `open_fault_count`. Subqueries, so the caller's filters and ordering stay as they are."""
    newest = TelemetryReading.objects.filter(equipment=OuterRef("pk")).order_by("-recorded_at", "-id")
    open_faults = (
        Fault.objects.filter(equipment=OuterRef("pk"), resolved_at__isnull=True)
        .order_by()
        .values("equipment")
        .annotate(count=Count("*"))
        .values("count")
    )
    return equipment.annotate(
        state_cycle=Subquery(newest.values("cycle_state")[:1]),
        state_temperature_c=Subquery(newest.values("temperature_c")[:1]),
        last_seen_at=Subquery(newest.values("recorded_at")[:1]),
        open_fault_count=Coalesce(Subquery(open_faults), 0),
    )


@dataclass(frozen=True)
class FaultAlertTarget:
    """Who must hear of a fault, and the names to tell them."""

    owner_id: int
    equipment_name: str
    equipment_kind: str
    branch_name: str


def fault_alert_target(*, equipment_id: int) -> FaultAlertTarget | None:
    """The owner of the equipment's branch and the names an alert shows (one query)."""
    row = (
        Equipment.objects.filter(pk=equipment_id)
        .values_list("branch__owner_id", "name", "kind", "branch__name")
        .first()
    )
    return FaultAlertTarget(*row) if row else None
