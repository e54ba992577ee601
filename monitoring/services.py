"""Equipment monitoring: every write goes through these services.

This module produces EquipmentFaultEvent; it imports nothing from `notifications` or `ml`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone

from branches.models import Branch
from messaging.contracts import EquipmentFaultEvent
from messaging.outbox import publish_event
from monitoring.models import Equipment, Fault, TelemetryReading, hash_api_key
from monitoring.rules import Trip, fault_rules


def _new_api_key() -> str:
    return secrets.token_urlsafe(32)


def equipment_create(*, branch: Branch, kind: str, name: str, api_key: str | None = None) -> tuple[Equipment, str]:
    """Register a washer or dryer; returns it with its API key (shown once, stored hashed)."""
    equipment = Equipment(branch=branch, kind=kind, name=name)
    return equipment, equipment_set_api_key(equipment=equipment, api_key=api_key)


def equipment_set_api_key(*, equipment: Equipment, api_key: str | None = None) -> str:
    """Give the equipment a new API key (a random one unless given); the old key stops working.

    Saves the equipment (creates it when it is new). Returns the key, which is stored hashed.
    """
    key = api_key or _new_api_key()
    equipment.api_key_hash = hash_api_key(key)
    equipment.api_key_prefix = key[:8]
    if equipment.pk is None:
        equipment.save()
    else:
        equipment.save(update_fields=["api_key_hash", "api_key_prefix"])
    return key


@dataclass
class IngestResult:
    accepted: int
    opened: list[Fault] = field(default_factory=list)


def telemetry_ingest(*, equipment: Equipment, readings: list[dict]) -> IngestResult:
    """Store validated readings and open the faults they trip, all in one transaction.

    A rule whose fault is still open trips nothing new: the partial unique index on open
    faults decides, so concurrent requests of one machine open one fault between them.
    Every fault opened publishes EquipmentFaultEvent through the outbox.
    """
    rules = fault_rules()
    ordered = sorted(readings, key=lambda reading: reading["recorded_at"])
    trips: dict[str, tuple[Trip, datetime]] = {}
    for reading in ordered:
        for trip in rules.evaluate(reading, kind=equipment.kind):
            trips.setdefault(trip.rule, (trip, reading["recorded_at"]))  # the first reading that tripped it
    with transaction.atomic():
        TelemetryReading.objects.bulk_create(
            TelemetryReading(equipment=equipment, **{**reading, "error_code": reading.get("error_code") or "",
                                                     "cycle_state": reading.get("cycle_state") or ""})
            for reading in ordered
        )
        opened = []
        for trip, detected_at in trips.values():
            fault = _open_fault(equipment=equipment, trip=trip, detected_at=detected_at)
            if fault is None:
                continue  # already open
            opened.append(fault)
            publish_event(EquipmentFaultEvent(
                fault_id=fault.pk, equipment_id=equipment.pk, branch_id=equipment.branch_id, code=fault.code,
                severity=fault.severity, message=fault.message, detected_at=fault.detected_at,
            ))
    return IngestResult(accepted=len(ordered), opened=opened)


def _open_fault(*, equipment: Equipment, trip: Trip, detected_at: datetime) -> Fault | None:
    """Insert an open fault unless one is open for this equipment and rule (then None).

    INSERT … ON CONFLICT DO NOTHING on the partial unique index: a concurrent insert of
    the same fault waits for the other transaction and then does nothing, without an
    error and without a savepoint per reading.
    """
    fault = Fault(
        equipment=equipment, rule=trip.rule, code=trip.code, severity=trip.severity,
        message=trip.message[:300], detected_at=detected_at, opened_at=timezone.now(),
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Fault._meta.db_table}"
            " (equipment_id, rule, code, severity, message, detected_at, opened_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (equipment_id, rule) WHERE resolved_at IS NULL DO NOTHING RETURNING id",
            [equipment.pk, fault.rule, fault.code, fault.severity, fault.message, fault.detected_at, fault.opened_at],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    fault.pk = row[0]
    return fault


def fault_acknowledge(*, fault: Fault, by: AbstractBaseUser | None = None) -> bool:
    """The owner has seen an open fault and is on it; it stays open (and keeps its rule from
    opening another) until resolved. False, changing nothing, when it was already acknowledged
    or is resolved: acknowledging is idempotent, and one statement decides concurrent calls."""
    return bool(
        Fault.objects.filter(pk=fault.pk, acknowledged_at__isnull=True, resolved_at__isnull=True).update(
            acknowledged_at=timezone.now(), acknowledged_by=by
        )
    )


def fault_resolve(*, fault: Fault, by: AbstractBaseUser | None = None) -> bool:
    """Close an open fault; the same rule can then open a new one. False when already resolved."""
    return bool(
        Fault.objects.filter(pk=fault.pk, resolved_at__isnull=True).update(
            resolved_at=timezone.now(), resolved_by=by
        )
    )
