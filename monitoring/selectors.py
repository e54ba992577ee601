from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from monitoring.models import Equipment, Fault, hash_api_key


def equipment_by_api_key(*, api_key: str) -> Equipment | None:
    """The equipment an API key belongs to (active or not), or None for an unknown key."""
    return Equipment.objects.select_related("branch").filter(api_key_hash=hash_api_key(api_key)).first()


def fault_list_visible_to(*, user: AbstractBaseUser) -> QuerySet[Fault]:
    """Every fault for a superuser; the faults of their own branches for an owner."""
    faults = Fault.objects.select_related("equipment__branch")
    return faults if user.is_superuser else faults.filter(equipment__branch__owner=user)


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
