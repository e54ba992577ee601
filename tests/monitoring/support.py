"""Builders for the monitoring tests: equipment with a known key, and readings."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from django.utils import timezone
from rest_framework.test import APIClient

from monitoring.services import equipment_create
from tests import factories

TELEMETRY_URL = "/api/v1/equipment/telemetry/"
_names = itertools.count(1)


def equipment(*, branch=None, kind: str = "washer", name: str | None = None, key: str | None = None):
    """A piece of equipment and its API key."""
    return equipment_create(
        branch=branch or factories.branch(), kind=kind, name=name or f"{kind}-{next(_names)}", api_key=key
    )


def reading(*, at: datetime | None = None, **fields) -> dict:
    """A normal washing reading as a machine sends it; override any field."""
    body = {
        "recorded_at": (at or timezone.now() - timedelta(seconds=1)).isoformat(),
        "error_code": None,
        "temperature_c": 41.5,
        "vibration_g": 0.3,
        "door_open": False,
        "cycle_state": "washing",
    }
    body.update(fields)
    return body


def machine_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_EQUIPMENT_KEY=key)
    return client
