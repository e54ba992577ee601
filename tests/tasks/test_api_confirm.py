"""The branch owner confirms or corrects an AI reading: POST /api/v1/tasks/{id}/confirm/."""

import jsonschema
import pytest

from messaging.models import OutboxMessage
from messaging.schemas import load_schema
from tasks.models import LaundryTask
from tests import factories

pytestmark = pytest.mark.django_db


def confirm_url(task) -> str:
    return f"/api/v1/tasks/{task.pk}/confirm/"


def confirmed_events() -> list[dict]:
    return [row.envelope for row in OutboxMessage.objects.filter(event_type="TaskConfirmedEvent").order_by("id")]


@pytest.fixture
def owner():
    return factories.user("owner-a", staff=True)


@pytest.fixture
def task(owner):
    return factories.analyzed_task(at=factories.branch(owner=owner), labels={"garment": "shirt", "condition": "clean"})


def test_an_empty_body_confirms_the_reading_as_it_is(owner, task):
    response = factories.api_client_for(owner).post(confirm_url(task), format="json")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "confirmed"
    assert body["confirmation"]["labels"] == {"garment": "shirt", "condition": "clean"}
    assert body["confirmation"]["confirmed_by"] == owner.pk
    (event,) = confirmed_events()
    assert event["schema_version"] == 2
    payload = event["payload"]
    assert payload["task_id"] == task.pk
    assert payload["branch_id"] == task.branch_id
    assert payload["photo"] == task.photo.name
    assert payload["photo_sha256"] == task.photo_sha256
    assert payload["ai_labels"] == payload["confirmed_labels"] == {"garment": "shirt", "condition": "clean"}
    assert payload["model_version"] == "v1"
    assert payload["confirmed_by"] == owner.pk


def test_the_published_payload_matches_the_committed_json_schema(owner, task):
    factories.api_client_for(owner).post(confirm_url(task), {"labels": {"garment": "towel", "condition": "torn"}},
                                         format="json")

    (event,) = confirmed_events()
    jsonschema.validate(event["payload"], load_schema("TaskConfirmedEvent", event["schema_version"]))


def test_labels_correct_the_reading(owner, task):
    response = factories.api_client_for(owner).post(
        confirm_url(task), {"labels": {"garment": "towel", "condition": "stained"}}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["confirmation"]["labels"] == {"garment": "towel", "condition": "stained"}
    assert response.json()["reading"]["labels"] == {"garment": "shirt", "condition": "clean"}  # the AI's stays
    (event,) = confirmed_events()
    assert event["payload"]["ai_labels"] == {"garment": "shirt", "condition": "clean"}
    assert event["payload"]["confirmed_labels"] == {"garment": "towel", "condition": "stained"}


@pytest.mark.parametrize("second", [None, {"labels": {"garment": "towel", "condition": "clean"}}])
def test_confirming_twice_is_idempotent(owner, task, second):
    client = factories.api_client_for(owner)
    first = client.post(confirm_url(task), {"labels": {"garment": "towel", "condition": "clean"}}, format="json")

    again = client.post(confirm_url(task), second, format="json")

    assert again.status_code == 200
    assert again.json() == first.json()
    assert len(confirmed_events()) == 1


def test_confirming_again_with_other_labels_is_409_and_changes_nothing(owner, task):
    client = factories.api_client_for(owner)
    client.post(confirm_url(task), format="json")

    response = client.post(confirm_url(task), {"labels": {"garment": "sock", "condition": "clean"}}, format="json")

    assert response.status_code == 409
    assert "already confirmed as garment shirt, condition clean" in response.json()["status"][0]
    task.refresh_from_db()
    assert task.confirmed_labels == {"garment": "shirt", "condition": "clean"}
    assert len(confirmed_events()) == 1


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"labels": {"garment": "scarf", "condition": "clean"}}, "garment", "Unknown label 'scarf'"),
        ({"labels": {"garment": "shirt"}}, "condition", "Missing"),
        ({"labels": {"garment": "shirt", "condition": "clean", "colour": "red"}}, "colour", "Unknown label space"),
        ({"labels": {}}, None, "may not be empty"),
        ({"labels": "towel"}, None, "Expected a dictionary"),
        ({"lables": {"garment": "shirt", "condition": "clean"}}, "lables", "Unknown field"),
    ],
)
def test_bad_labels_are_400_and_change_nothing(owner, task, body, field, message):
    response = factories.api_client_for(owner).post(confirm_url(task), body, format="json")

    assert response.status_code == 400
    errors = response.json()
    if field == "lables":
        assert message in errors["lables"][0]
    else:
        detail = errors["labels"]
        text = detail[field] if field else detail
        assert message in str(text), errors
    task.refresh_from_db()
    assert task.status == LaundryTask.Status.ANALYZED
    assert task.confirmed_labels is None
    assert confirmed_events() == []


@pytest.mark.parametrize(
    ("labels", "field", "message"),
    [
        ({"garment": "scarf", "condition": "clean"}, "garment", "Unknown label 'scarf'"),
        ({"garment": "shirt"}, "condition", "Missing"),
        ({"garment": "shirt", "condition": "clean", "colour": "red"}, "colour", "Unknown label space"),
    ],
)
def test_bad_labels_are_400_even_when_the_task_is_already_confirmed(owner, task, labels, field, message):
    client = factories.api_client_for(owner)
    client.post(confirm_url(task), format="json")

    response = client.post(confirm_url(task), {"labels": labels}, format="json")

    assert response.status_code == 400, response.json()
    assert message in response.json()["labels"][field]
    task.refresh_from_db()
    assert task.confirmed_labels == {"garment": "shirt", "condition": "clean"}
    assert len(confirmed_events()) == 1


@pytest.mark.parametrize("status", ["submitted", "analyzing", "failed"])
@pytest.mark.parametrize(
    ("labels", "field", "message"),
    [
        ({"garment": "scarf", "condition": "clean"}, "garment", "Unknown label 'scarf'"),
        ({"garment": "shirt", "colour": "red"}, "colour", "Unknown label space"),
    ],
)
def test_bad_labels_are_400_even_when_the_task_has_no_reading(owner, task, status, labels, field, message):
    task.reading.delete()
    LaundryTask.objects.filter(pk=task.pk).update(status=status)

    response = factories.api_client_for(owner).post(confirm_url(task), {"labels": labels}, format="json")

    assert response.status_code == 400, response.json()
    assert message in response.json()["labels"][field]
    task.refresh_from_db()
    assert task.status == status
    assert confirmed_events() == []


def test_a_body_that_is_not_json_is_415(owner, task):
    response = factories.api_client_for(owner).post(confirm_url(task), "garment=towel",
                                                    content_type="application/x-www-form-urlencoded")

    assert response.status_code == 415
    assert confirmed_events() == []


def test_another_owners_task_is_404_and_untouched(task):
    stranger = factories.user("owner-b", staff=True)
    factories.branch(owner=stranger)

    response = factories.api_client_for(stranger).post(confirm_url(task), format="json")

    assert response.status_code == 404
    task.refresh_from_db()
    assert task.status == LaundryTask.Status.ANALYZED
    assert confirmed_events() == []


def test_a_helper_of_the_branch_cannot_confirm(task):
    response = factories.api_client_for(task.helper).post(confirm_url(task), format="json")

    assert response.status_code == 404
    assert confirmed_events() == []


def test_an_unknown_task_is_404(owner):
    assert factories.api_client_for(owner).post("/api/v1/tasks/999999/confirm/", format="json").status_code == 404


def test_confirming_needs_a_token(task):
    from rest_framework.test import APIClient

    assert APIClient().post(confirm_url(task), format="json").status_code == 401


@pytest.mark.parametrize("status", ["submitted", "analyzing", "failed"])
def test_a_task_without_a_reading_to_confirm_is_409(owner, task, status):
    task.reading.delete()
    LaundryTask.objects.filter(pk=task.pk).update(status=status)

    response = factories.api_client_for(owner).post(confirm_url(task), format="json")

    assert response.status_code == 409
    assert f"it is {status}" in response.json()["status"][0]
    assert confirmed_events() == []


def test_owners_list_and_read_the_tasks_of_their_branches_only(owner, task):
    other = factories.analyzed_task()
    client = factories.api_client_for(owner)

    listed = client.get("/api/v1/tasks/?status=analyzed").json()["results"]
    assert [row["id"] for row in listed] == [task.pk]
    assert client.get(f"/api/v1/tasks/{task.pk}/").json()["confirmation"] is None
    assert client.get(f"/api/v1/tasks/{other.pk}/").status_code == 404
    assert client.get("/api/v1/tasks/?status=confirmed").json()["results"] == []
    assert client.get("/api/v1/tasks/?status=done").status_code == 400
