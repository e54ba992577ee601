"""The branch owner's equipment and faults in the admin: current state, acknowledge, resolve."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring.models import Equipment, Fault
from monitoring.services import fault_acknowledge, fault_resolve, telemetry_ingest
from tests import factories
from tests.monitoring.support import equipment, reading

pytestmark = pytest.mark.django_db

EQUIPMENT_URL = "/admin/monitoring/equipment/"
FAULT_URL = "/admin/monitoring/fault/"
READING_URL = "/admin/monitoring/telemetryreading/"


def shown_messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


@pytest.fixture
def owner():
    return factories.user("owner-one", staff=True)


@pytest.fixture
def machine(owner):
    """A washer of the owner's branch that reported 63.5 °C while spinning, then E21."""
    washer, _ = equipment(branch=factories.branch("one", owner=owner), name="washer-1")
    now = timezone.now()
    telemetry_ingest(equipment=washer, readings=[
        reading(at=now - timedelta(seconds=30), temperature_c=40.0, cycle_state="washing"),
        reading(at=now - timedelta(seconds=5), temperature_c=63.5, cycle_state="spinning", error_code="E21"),
    ])
    return washer


@pytest.fixture
def other_machine():
    dryer, _ = equipment(branch=factories.branch("two", owner=factories.user("owner-two", staff=True)),
                         kind="dryer", name="dryer-other")
    telemetry_ingest(equipment=dryer, readings=[reading(error_code="E41", cycle_state="drying", temperature_c=88.0)])
    return dryer


@pytest.fixture
def owner_client(client, owner, machine):
    client.force_login(owner)
    return client


def test_the_owner_sees_the_current_state_of_their_equipment_only(owner_client, machine, other_machine):
    idle, _ = equipment(branch=machine.branch, name="washer-idle")

    page = owner_client.get(EQUIPMENT_URL)

    assert page.status_code == 200
    rows = {row.name: row for row in page.context["cl"].result_list}
    assert set(rows) == {"washer-1", "washer-idle"}
    washer = rows["washer-1"]
    assert (washer.state_cycle, washer.state_temperature_c, washer.open_fault_count) == ("spinning", 63.5, 1)
    assert washer.last_seen_at is not None and rows["washer-idle"].last_seen_at is None
    html = page.content.decode()
    assert "63.5 °C" in html and "spinning" in html and "never" in html
    assert f'href="{FAULT_URL}?equipment__id__exact={machine.pk}&amp;resolved_at__isnull=True"' in html
    assert "dryer-other" not in html and "Branch two" not in html


def test_owners_neither_see_nor_issue_api_keys(owner_client, machine):
    list_page = owner_client.get(EQUIPMENT_URL).content.decode()
    change_page = owner_client.get(f"{EQUIPMENT_URL}{machine.pk}/change/")
    key_hash = machine.api_key_hash

    response = owner_client.post(EQUIPMENT_URL, {"action": "issue_new_key", "index": "0",
                                                 "_selected_action": [machine.pk]})

    assert "issue_new_key" not in list_page and machine.api_key_prefix not in list_page
    assert change_page.status_code == 200
    assert machine.api_key_prefix not in change_page.content.decode()
    assert "63.5 °C" in change_page.content.decode()
    assert response.status_code in (200, 302) and "New API key" not in response.content.decode()
    assert Equipment.objects.get(pk=machine.pk).api_key_hash == key_hash
    assert owner_client.get(f"{EQUIPMENT_URL}add/").status_code == 403
    assert owner_client.post(f"{EQUIPMENT_URL}{machine.pk}/change/", {"name": "renamed"}).status_code == 403


def test_a_superuser_still_sees_the_key_prefix_and_issues_keys(client, machine, other_machine):
    root = factories.user("root", superuser=True)
    client.force_login(root)

    page = client.get(EQUIPMENT_URL)
    response = client.post(EQUIPMENT_URL, {"action": "issue_new_key", "_selected_action": [machine.pk]}, follow=True)

    assert {row.name for row in page.context["cl"].result_list} == {"washer-1", "dryer-other"}
    assert machine.api_key_prefix in page.content.decode()
    assert shown_messages(response)[0].startswith("New API key of washer-1")
    assert Equipment.objects.get(pk=machine.pk).api_key_hash != machine.api_key_hash


def test_acknowledge_is_idempotent_and_leaves_the_fault_open(owner, machine):
    fault = Fault.objects.get(equipment=machine)

    assert fault_acknowledge(fault=fault, by=owner) is True
    first = Fault.objects.get(pk=fault.pk).acknowledged_at
    assert fault_acknowledge(fault=fault, by=owner) is False

    fault.refresh_from_db()
    assert fault.acknowledged_at == first and fault.acknowledged_by == owner
    assert fault.is_open and fault.state == "acknowledged"
    assert fault_resolve(fault=fault, by=owner) is True
    assert fault_acknowledge(fault=fault, by=owner) is False  # resolved: nothing to acknowledge
    fault.refresh_from_db()
    assert fault.state == "resolved"


def test_the_owner_acknowledges_then_resolves_from_the_fault_list(owner_client, owner, machine, other_machine):
    fault = Fault.objects.get(equipment=machine)
    other_fault = Fault.objects.get(equipment=other_machine)
    selected = [fault.pk, other_fault.pk]

    acknowledged = owner_client.post(FAULT_URL, {"action": "acknowledge", "_selected_action": selected}, follow=True)
    again = owner_client.post(FAULT_URL, {"action": "acknowledge", "_selected_action": selected}, follow=True)
    listed = owner_client.get(FAULT_URL, {"state": "acknowledged"})
    resolved = owner_client.post(FAULT_URL, {"action": "resolve", "_selected_action": selected}, follow=True)

    assert shown_messages(acknowledged) == ["1 fault(s) acknowledged."]
    assert shown_messages(again) == ["0 fault(s) acknowledged.", "1 already acknowledged or resolved: unchanged."]
    assert [row.pk for row in listed.context["cl"].result_list] == [fault.pk]
    assert shown_messages(resolved) == ["1 fault(s) resolved."]
    fault.refresh_from_db()
    other_fault.refresh_from_db()
    assert fault.state == "resolved" and fault.acknowledged_by == owner and fault.resolved_by == owner
    assert other_fault.state == "open"  # another owner's fault id is not even selected


def test_the_fault_history_and_its_branch_filter_show_the_owners_branches_only(owner_client, owner, machine,
                                                                                 other_machine):
    factories.branch("one-more", owner=owner)  # with a single branch Django hides the filter
    fault_resolve(fault=Fault.objects.get(equipment=machine))
    telemetry_ingest(equipment=machine, readings=[reading(error_code="E21")])  # the same rule opens a new one

    page = owner_client.get(FAULT_URL)
    open_only = owner_client.get(FAULT_URL, {"equipment__id__exact": machine.pk, "resolved_at__isnull": "True"})

    assert [row.state for row in page.context["cl"].result_list] == ["open", "resolved"]
    assert len(open_only.context["cl"].result_list) == 1
    branch_filter = next(spec for spec in page.context["cl"].filter_specs if spec.title == "branch")
    assert [name for _, name in branch_filter.lookup_choices] == ["Branch one", "Branch one-more"]
    assert "E41" not in page.content.decode() and "Branch two" not in page.content.decode()
    assert owner_client.get(f"{FAULT_URL}{Fault.objects.get(equipment=other_machine).pk}/change/")["Location"] \
        == "/admin/"


def test_the_owner_sees_the_readings_of_their_equipment_only(owner_client, machine, other_machine):
    page = owner_client.get(READING_URL)

    assert page.status_code == 200
    assert {row.equipment_id for row in page.context["cl"].result_list} == {machine.pk}
    assert "dryer-other" not in page.content.decode() and "Branch two" not in page.content.decode()
    assert owner_client.get(f"{READING_URL}add/").status_code == 403
