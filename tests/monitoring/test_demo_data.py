"""load_demo_data adds equipment, customers and device tokens, and running it twice changes nothing."""

import io

import pytest
from django.core.management import call_command

from branches.models import BranchProfile, CustomerPreference
from monitoring.models import Equipment
from notifications.models import DeviceToken
from tests.monitoring.support import TELEMETRY_URL, machine_client, reading

pytestmark = pytest.mark.django_db


def snapshot():
    return (
        sorted(Equipment.objects.values_list("branch__code", "name", "kind", "api_key_hash")),
        sorted(CustomerPreference.objects.values_list("customer__username", "max_price_level", "max_distance_km")),
        sorted(DeviceToken.objects.values_list("user__username", "token", "is_active")),
        sorted(BranchProfile.objects.values_list("branch__code", "price_level", "latitude")),
    )


def test_demo_data_is_idempotent_and_the_documented_key_works():
    call_command("load_demo_data", stdout=io.StringIO())
    first = snapshot()
    call_command("load_demo_data", stdout=io.StringIO())

    assert snapshot() == first
    equipment, customers, devices, profiles = first
    assert len(equipment) == 6 and len(customers) == 6 and len(profiles) == 2
    assert {"owner1", "owner2"} <= {username for username, _, _ in devices}
    response = machine_client("demo-washer-1-key").post(TELEMETRY_URL, reading(), format="json")
    assert response.status_code == 202
    assert Equipment.objects.get(name="washer-1", branch__code="gangnam").readings.count() == 1
