"""POST /api/v1/equipment/telemetry/: readings are stored, rules open faults once, bad input stores nothing."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from messaging.models import OutboxMessage
from monitoring.models import Fault, TelemetryReading
from monitoring.services import fault_resolve
from tests import factories
from tests.monitoring.support import TELEMETRY_URL, equipment, machine_client, reading

pytestmark = pytest.mark.django_db  # one rolled-back transaction per test: no event is ever published


@pytest.fixture
def washer():
    return equipment(kind="washer", key="washer-test-key")[0]


@pytest.fixture
def client(washer):
    return machine_client("washer-test-key")


def fault_events() -> list[dict]:
    return [m.envelope for m in OutboxMessage.objects.filter(event_type="EquipmentFaultEvent").order_by("id")]


def test_a_normal_reading_is_stored_and_opens_nothing(client, washer):
    response = client.post(TELEMETRY_URL, reading(), format="json")

    assert response.status_code == 202, response.json()
    assert response.json() == {"accepted": 1, "faults_opened": []}
    stored = TelemetryReading.objects.get()
    assert stored.equipment == washer and stored.temperature_c == 41.5 and stored.cycle_state == "washing"
    assert stored.error_code == ""
    assert not Fault.objects.exists() and not fault_events()


def test_an_error_code_opens_a_fault_and_publishes_its_event_in_the_same_transaction(client, washer):
    at = timezone.now() - timedelta(seconds=5)

    response = client.post(TELEMETRY_URL, reading(at=at, error_code="e21"), format="json")

    assert response.status_code == 202
    fault = Fault.objects.get()
    assert (fault.equipment, fault.rule, fault.code, fault.severity) == (washer, "error:E21", "E21", "critical")
    assert fault.detected_at == at and fault.is_open
    assert response.json()["faults_opened"] == [
        {"id": fault.pk, "rule": "error:E21", "code": "E21", "severity": "critical", "message": fault.message}
    ]
    (envelope,) = fault_events()
    assert envelope["producer"] == "monitoring" and envelope["schema_version"] == 1
    assert envelope["payload"] == {
        "fault_id": fault.pk, "equipment_id": washer.pk, "branch_id": washer.branch_id, "code": "E21",
        "severity": "critical", "message": "Drain failure: the water does not drain",
        "detected_at": at.isoformat().replace("+00:00", "Z"),
    }
    assert OutboxMessage.objects.get().queue == "EquipmentFaultEvent"  # the routing key: the event type


def test_a_list_of_buffered_readings_is_accepted_and_the_first_tripping_reading_dates_the_fault(client):
    now = timezone.now()
    readings = [
        reading(at=now - timedelta(seconds=3), temperature_c=97.0),
        reading(at=now - timedelta(seconds=9), temperature_c=96.0),  # the earliest overheat
        reading(at=now - timedelta(seconds=20)),
    ]

    response = client.post(TELEMETRY_URL, readings, format="json")

    assert response.status_code == 202
    assert response.json()["accepted"] == 3 and TelemetryReading.objects.count() == 3
    fault = Fault.objects.get()
    assert fault.rule == "overheat" and fault.detected_at == now - timedelta(seconds=9)
    assert fault.message == "Overheating: 96.0 °C (limit 95 °C)"


def test_a_machine_repeating_the_same_error_raises_one_fault_until_it_is_resolved(client, washer):
    for _ in range(20):
        assert client.post(TELEMETRY_URL, reading(error_code="E21"), format="json").status_code == 202
    assert client.post(TELEMETRY_URL, [reading(error_code="E21")] * 50, format="json").status_code == 202

    assert Fault.objects.count() == 1 and len(fault_events()) == 1
    assert TelemetryReading.objects.count() == 70

    fault_resolve(fault=Fault.objects.get())
    again = client.post(TELEMETRY_URL, reading(error_code="E21"), format="json")

    assert again.json()["faults_opened"][0]["id"] != fault_events()[0]["payload"]["fault_id"]
    assert Fault.objects.filter(resolved_at__isnull=True).count() == 1 and len(fault_events()) == 2


def test_each_rule_opens_its_own_fault(client):
    response = client.post(
        TELEMETRY_URL, reading(error_code="E99", vibration_g=3.1, door_open=True, cycle_state="spinning"),
        format="json",
    )

    opened = {(f["rule"], f["severity"]) for f in response.json()["faults_opened"]}
    assert opened == {("error:E99", "warning"), ("vibration", "warning"), ("door_open_in_cycle", "critical")}


def test_thresholds_can_be_limited_to_a_kind_of_equipment():
    dryer = equipment(kind="dryer", key="dryer-key")[0]
    client = machine_client("dryer-key")

    assert client.post(TELEMETRY_URL, reading(temperature_c=100, cycle_state="drying"), format="json").json()[
        "faults_opened"] == []
    assert [f["rule"] for f in client.post(
        TELEMETRY_URL, reading(temperature_c=115, cycle_state="drying"), format="json"
    ).json()["faults_opened"]] == ["dryer_overheat"]
    assert Fault.objects.get().equipment == dryer


def test_the_same_fault_on_two_machines_is_two_faults(client):
    equipment(key="second-washer-key")
    client.post(TELEMETRY_URL, reading(error_code="E21"), format="json")
    machine_client("second-washer-key").post(TELEMETRY_URL, reading(error_code="E21"), format="json")

    assert Fault.objects.count() == 2


# --- refused requests: a clear 4xx, and nothing stored ----------------------------------


@pytest.fixture
def nothing_stored():
    yield
    assert TelemetryReading.objects.count() == 0
    assert Fault.objects.count() == 0
    assert OutboxMessage.objects.count() == 0


def test_a_missing_key_is_401(washer, nothing_stored):
    response = APIClient().post(TELEMETRY_URL, reading(error_code="E21"), format="json")

    assert response.status_code == 401
    assert "X-Equipment-Key" in response["WWW-Authenticate"]


@pytest.mark.parametrize(
    "key", ["wrong-key", "washer-test-key2", "x" * 201, ""], ids=["unknown", "almost", "too-long", "empty"]
)
def test_a_wrong_key_is_401(washer, nothing_stored, key):
    response = machine_client(key).post(TELEMETRY_URL, reading(error_code="E21"), format="json")

    assert response.status_code == 401
    assert response.json()["detail"] in {"Unknown equipment key.", "The X-Equipment-Key header is empty or too long."}


def test_a_user_token_is_no_equipment_key(washer, nothing_stored):
    response = factories.api_client_for(factories.user()).post(TELEMETRY_URL, reading(), format="json")

    assert response.status_code == 401


def test_deactivated_equipment_is_403(washer, client, nothing_stored):
    washer.is_active = False
    washer.save()

    response = client.post(TELEMETRY_URL, reading(error_code="E21"), format="json")

    assert response.status_code == 403 and "deactivated" in response.json()["detail"]


def in_the_future():
    return (timezone.now() + timedelta(minutes=5)).isoformat()


BAD_READINGS = {
    "future": ({"recorded_at": in_the_future}, "recorded_at", "from the future"),
    "too-old": ({"recorded_at": lambda: (timezone.now() - timedelta(days=8)).isoformat()}, "recorded_at", "too old"),
    "naive-time": ({"recorded_at": lambda: "2026-11-25T10:00:00"}, "recorded_at", "UTC offset"),
    "not-a-time": ({"recorded_at": lambda: "yesterday"}, "recorded_at", "Datetime has wrong format"),
    "no-time": ({"recorded_at": None}, "recorded_at", "may not be null"),
    "too-hot": ({"temperature_c": 151}, "temperature_c", "less than or equal to 150"),
    "too-cold": ({"temperature_c": -41}, "temperature_c", "greater than or equal to -40"),
    "temperature-text": ({"temperature_c": "warm"}, "temperature_c", "A valid number is required"),
    "negative-vibration": ({"vibration_g": -0.1}, "vibration_g", "greater than or equal to 0"),
    "door-not-bool": ({"door_open": "ajar"}, "door_open", "Must be a valid boolean"),
    "unknown-cycle": ({"cycle_state": "dancing"}, "cycle_state", "is not a valid choice"),
    "bad-error-code": ({"error_code": "E 21!"}, "error_code", "1 to 16 letters"),
    "empty-error-code": ({"error_code": ""}, "error_code", "Send null when there is no error code"),
    "unknown-field": ({"humidity": 40}, "humidity", "Unknown field"),
}


@pytest.mark.parametrize("change, field, text", BAD_READINGS.values(), ids=BAD_READINGS.keys())
def test_a_bad_reading_is_400_naming_the_field(client, nothing_stored, change, field, text):
    body = reading(error_code="E21")
    body.update({name: value() if callable(value) else value for name, value in change.items()})

    response = client.post(TELEMETRY_URL, body, format="json")

    assert response.status_code == 400, response.json()
    assert text in " ".join(response.json()[field])


def test_one_bad_reading_in_a_list_refuses_the_whole_list(client, nothing_stored):
    readings = [reading(error_code="E21"), reading(temperature_c=40), reading(vibration_g=99)]

    response = client.post(TELEMETRY_URL, readings, format="json")

    assert response.status_code == 400
    # DRF >= 3.18: the errors of a list by the index of each bad item (a JSON object), the good ones absent
    errors = response.json()
    assert list(errors) == ["2"] and "vibration_g" in errors["2"]


@pytest.mark.parametrize(
    "raw, content_type, status, text",
    [
        (b'{"recorded_at": ', "application/json", 400, "JSON parse error"),
        (b'{"recorded_at": "2026-11-25T10:00:00Z", "temperature_c": NaN}', "application/json", 400, "JSON"),
        (b"42", "application/json", 400, "one reading"),
        (b'"reading"', "application/json", 400, "one reading"),
        (b"[]", "application/json", 400, "1 to 500 readings"),
        (b"recorded_at=2026-11-25T10:00:00Z", "application/x-www-form-urlencoded", 415, "Unsupported media type"),
    ],
    ids=["truncated", "nan", "number", "string", "empty-list", "form"],
)
def test_a_malformed_body_is_refused(client, nothing_stored, raw, content_type, status, text):
    response = client.generic("POST", TELEMETRY_URL, raw, content_type=content_type)

    assert response.status_code == status
    assert text in json.dumps(response.json())


def test_too_many_readings_in_one_request_are_refused(client, nothing_stored, settings):
    settings.MONITORING_TELEMETRY_MAX_READINGS = 5

    response = client.post(TELEMETRY_URL, [reading()] * 6, format="json")

    assert response.status_code == 400 and "1 to 5 readings" in response.json()["non_field_errors"][0]


def test_the_schema_describes_the_telemetry_and_notification_endpoints():
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    telemetry = schema["paths"]["/api/v1/equipment/telemetry/"]["post"]
    assert telemetry["security"] == [{"equipmentKey": []}]
    assert schema["components"]["securitySchemes"]["equipmentKey"] == {
        "type": "apiKey", "in": "header", "name": "X-Equipment-Key"
    }
    assert set(telemetry["responses"]) >= {"202", "400", "401", "403", "415"}
    assert set(schema["paths"]["/api/v1/devices/"]) >= {"post", "delete"}
    assert "get" in schema["paths"]["/api/v1/notifications/"]
