"""GET /api/v1/tasks/ and /api/v1/tasks/{id}/, the token endpoint, and branch isolation."""

import pytest
from rest_framework.test import APIClient

from tasks.models import LaundryTask, Reading
from tests import factories

pytestmark = pytest.mark.django_db


def make_task(helper, **fields) -> LaundryTask:
    return LaundryTask.objects.create(
        branch=helper.helper.branch, helper=helper, photo="tasks/x.jpg", photo_sha256="0" * 64, photo_size=1,
        photo_content_type="image/jpeg", **fields,
    )


def test_the_token_endpoint_trades_username_and_password_for_a_token():
    factories.helper(username="helper9")

    response = APIClient().post("/api/v1/auth/token/", {"username": "helper9", "password": "helper9-pass"})

    assert response.status_code == 200
    assert len(response.json()["token"]) == 64 and response.json()["expiry"]


def test_the_token_endpoint_refuses_a_wrong_password_with_400():
    factories.helper(username="helper8")

    response = APIClient().post("/api/v1/auth/token/", {"username": "helper8", "password": "nope"}, format="json")

    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["Unable to log in with provided credentials."]}


def test_detail_shows_the_status_and_the_reading_once_there_is_one():
    helper = factories.helper()
    task = make_task(helper, status=LaundryTask.Status.ANALYZED)
    Reading.objects.create(
        task=task, labels={"garment": "shirt", "condition": "stained"},
        confidences={"garment": 0.9, "condition": 0.8}, model_version="v1", inference_ms=5.0,
    )

    body = factories.api_client_for(helper).get(f"/api/v1/tasks/{task.pk}/").json()

    assert body["status"] == "analyzed"
    assert body["reading"]["labels"] == {"garment": "shirt", "condition": "stained"}
    assert body["reading"]["model_version"] == "v1"


def test_the_list_is_the_helpers_own_tasks_newest_first_and_paginated():
    helper = factories.helper()
    colleague = factories.helper(at=helper.helper.branch)
    mine = [make_task(helper) for _ in range(23)]
    make_task(colleague)

    client = factories.api_client_for(helper)
    first = client.get("/api/v1/tasks/").json()
    second = client.get(first["next"]).json()

    assert first["count"] == 23
    assert [t["id"] for t in first["results"] + second["results"]] == [t.pk for t in reversed(mine)]


def test_another_branchs_task_is_404_and_never_listed():
    helper = factories.helper()
    stranger = factories.helper()
    theirs = make_task(stranger)
    client = factories.api_client_for(helper)

    assert client.get(f"/api/v1/tasks/{theirs.pk}/").status_code == 404
    assert client.get("/api/v1/tasks/999999/").json() == {"detail": "No such task."}
    assert client.get("/api/v1/tasks/").json()["count"] == 0


def test_a_helper_reads_only_the_tasks_they_list_not_a_colleagues():
    # A helper sees only their own tasks, in the list and by id alike (the privacy default):
    # a colleague at the same branch is a stranger to the detail view too.
    helper = factories.helper()
    colleague = factories.helper(at=helper.helper.branch)
    mine = make_task(helper)
    theirs = make_task(colleague)
    client = factories.api_client_for(helper)

    assert [t["id"] for t in client.get("/api/v1/tasks/").json()["results"]] == [mine.pk]
    assert client.get(f"/api/v1/tasks/{mine.pk}/").status_code == 200
    response = client.get(f"/api/v1/tasks/{theirs.pk}/")
    assert response.status_code == 404
    assert response.json() == {"detail": "No such task."}  # the same answer as for a task that does not exist


def test_an_owner_reads_every_task_they_list():
    owner = factories.user("owner-r", staff=True)
    branch = factories.branch(owner=owner)
    helpers = [factories.helper(at=branch) for _ in range(2)]
    tasks = [make_task(helper) for helper in helpers]
    client = factories.api_client_for(owner)

    listed = [t["id"] for t in client.get("/api/v1/tasks/").json()["results"]]
    assert sorted(listed) == sorted(t.pk for t in tasks)
    assert all(client.get(f"/api/v1/tasks/{pk}/").status_code == 200 for pk in listed)


@pytest.mark.parametrize("url", ["/api/v1/tasks/", "/api/v1/tasks/1/"])
def test_reading_needs_a_token_and_a_helper(url):
    assert APIClient().get(url).status_code == 401
    assert factories.api_client_for(factories.user(staff=True)).get(url).status_code == 403
