"""POST /api/v1/tasks/: the helper registers a task; bad input is refused and leaves nothing."""

import threading
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from messaging.models import OutboxMessage
from tasks.api import TaskAcceptedSerializer
from tasks.models import LaundryTask
from tests import factories
from tests.support import drain_queue, queue_depth, refuse_the_uploads_event_row, wait_for

URL = "/api/v1/tasks/"


def stored_photos() -> set[Path]:
    root = Path(settings.MEDIA_ROOT) / "tasks"
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def upload(content: bytes, name: str = "laundry.jpg", content_type: str = "image/jpeg") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type=content_type)


@pytest.fixture
def helper(db):
    return factories.helper()


@pytest.fixture
def client(helper):
    return factories.api_client_for(helper)


@pytest.fixture
def nothing_left_behind(db):
    """Assert that the test's request stored no task, no photo and no outbox row."""
    photos_before = set(stored_photos())
    yield
    assert LaundryTask.objects.count() == 0
    assert OutboxMessage.objects.count() == 0
    assert stored_photos() == photos_before


@pytest.mark.django_db
def test_a_helper_registers_a_task_and_gets_202_at_once(client, helper):
    response = client.post(URL, {"photo": upload(factories.photo_bytes()), "note": "two shirts"}, format="multipart")

    assert response.status_code == 202, response.json()
    body = response.json()
    task = LaundryTask.objects.get()
    assert set(body) == {"id", "url", "status", "created_at"}
    assert body["id"] == task.pk and body["status"] == "submitted"
    assert body["url"] == f"http://testserver/api/v1/tasks/{task.pk}/" == response["Location"]
    assert body == TaskAcceptedSerializer(task, context={"request": response.wsgi_request}).data, "as documented"
    assert task.note == "two shirts" and task.photo_content_type == "image/jpeg"
    assert task.helper == helper and task.branch == helper.helper.branch
    (event,) = OutboxMessage.objects.all()
    assert event.event_type == "TaskSubmittedEvent"
    assert event.envelope["payload"] == {
        "task_id": task.pk, "branch_id": task.branch_id, "helper_id": helper.pk, "photo": task.photo.name,
    }
    assert event.envelope["correlation_id"] == response["X-Request-ID"]
    assert event.created_at >= task.created_at  # the operator's timeline shows the request first
    assert task.photo.storage.exists(task.photo.name)


@pytest.mark.django_db
@pytest.mark.parametrize("fmt, content_type", [("PNG", "image/png"), ("WEBP", "image/webp")])
def test_png_and_webp_are_accepted(client, fmt, content_type):
    response = client.post(URL, {"photo": upload(factories.photo_bytes(fmt), "p.bin", "application/octet-stream")})
    assert response.status_code == 202, response.json()
    assert LaundryTask.objects.get().photo_content_type == content_type


@pytest.mark.parametrize(
    "data, status, field, message",
    [
        ({}, 400, "photo", "No file was submitted."),
        ({"photo": "not a file"}, 400, "photo", "The submitted data was not a file"),
        ({"photo": upload(b"just some text, honestly")}, 400, "photo", "not a JPEG, PNG or WebP image"),
        ({"photo": upload(factories.photo_bytes()[:3000])}, 400, "photo", "corrupt or truncated"),
        ({"photo": upload(b"")}, 400, "photo", "The submitted file is empty."),
        ({"photo": upload(factories.photo_bytes("GIF"), "a.gif")}, 400, "photo", "GIF image; JPEG, PNG or WebP"),
        ({"photo": upload(factories.png_header_only(8000, 8000), "big.png")}, 400, "photo",
         "8000x8000 pixels; at most 40 megapixels"),
        ({"photo": upload(factories.png_header_only(30000, 30000), "bomb.png")}, 400, "photo", "decompression bomb"),
        ({"photo": upload(factories.photo_bytes()), "colour": "blue"}, 400, "colour", "Unknown field."),
        ({"photo": upload(factories.photo_bytes()), "note": "x" * 1001}, 400, "note", "no more than 1000"),
    ],
    ids=["no-photo", "photo-not-a-file", "text-named-jpg", "truncated-jpeg", "empty", "gif", "too-many-pixels",
         "decompression-bomb",
         "unknown-field", "note-too-long"],
)
def test_bad_input_gets_a_precise_error_and_stores_nothing(client, nothing_left_behind, data, status, field, message):
    response = client.post(URL, data, format="multipart")

    assert response.status_code == status, response.content
    assert message in " ".join(response.json()[field])


def test_a_50_mb_upload_is_refused_with_413(client, nothing_left_behind):
    big = upload(b"\xff\xd8" + b"\0" * (50 * 1000 * 1000))

    response = client.post(URL, {"photo": big}, format="multipart")

    assert response.status_code == 413
    assert "at most 10 MB" in response.json()["photo"][0]


def test_a_photo_over_10_mb_inside_the_limit_slack_is_refused_with_413(client, nothing_left_behind):
    response = client.post(URL, {"photo": upload(b"\xff\xd8" + b"\0" * (10 * 1000 * 1000 + 10))})

    assert response.status_code == 413
    assert "at most 10 MB" in response.json()["photo"][0]


def test_a_json_body_is_refused_with_415(client, nothing_left_behind):
    response = client.post(URL, {"note": "hi"}, format="json")

    assert response.status_code == 415


@pytest.mark.parametrize("credentials", [None, "Token wrong", "Bearer abc"], ids=["missing", "wrong", "other-scheme"])
def test_without_a_valid_token_the_answer_is_401(db, nothing_left_behind, credentials):
    from rest_framework.test import APIClient

    client = APIClient()
    if credentials:
        client.credentials(HTTP_AUTHORIZATION=credentials)

    response = client.post(URL, {"photo": upload(factories.photo_bytes())}, format="multipart")

    assert response.status_code == 401
    assert response.json()["detail"] in {"Authentication credentials were not provided.", "Invalid token."}


def test_a_user_who_is_not_a_helper_gets_403(db, nothing_left_behind):
    owner = factories.user(staff=True)

    response = factories.api_client_for(owner).post(URL, {"photo": upload(factories.photo_bytes())})

    assert response.status_code == 403
    assert response.json()["detail"] == "Only helpers of a branch can register tasks."


@pytest.mark.django_db
def test_the_same_idempotency_key_returns_the_same_task(client):
    photos_before = stored_photos()
    photo = factories.photo_bytes()
    first = client.post(URL, {"photo": upload(photo)}, HTTP_IDEMPOTENCY_KEY="k-1")
    again = client.post(URL, {"photo": upload(photo)}, HTTP_IDEMPOTENCY_KEY="k-1")

    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again["Idempotent-Replayed"] == "true"
    assert LaundryTask.objects.count() == 1 and OutboxMessage.objects.count() == 1
    assert len(stored_photos() - photos_before) == 1


@pytest.mark.django_db
def test_the_same_idempotency_key_with_another_photo_is_409(client):
    photos_before = stored_photos()
    client.post(URL, {"photo": upload(factories.photo_bytes())}, HTTP_IDEMPOTENCY_KEY="k-2")

    response = client.post(URL, {"photo": upload(factories.photo_bytes(colour=(1, 2, 3)))}, HTTP_IDEMPOTENCY_KEY="k-2")

    assert response.status_code == 409
    assert "already used for another photo" in response.json()["Idempotency-Key"][0]
    assert LaundryTask.objects.count() == 1 and OutboxMessage.objects.count() == 1
    assert len(stored_photos() - photos_before) == 1, "the refused photo was deleted"


def test_a_task_whose_event_cannot_be_stored_leaves_no_row_and_no_photo(helper, nothing_left_behind, monkeypatch):
    from django.db import IntegrityError

    from tasks.services import task_submit

    refused = refuse_the_uploads_event_row(monkeypatch)  # in the task's statement
    with pytest.raises(IntegrityError):
        task_submit(helper=helper, branch=helper.helper.branch, photo=upload(factories.photo_bytes()))

    (name, existed), = refused  # the photo was on disk when the insert failed, and is gone
    assert existed and not (Path(settings.MEDIA_ROOT) / name).exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_the_same_idempotency_key_make_one_task(route_events, relay):
    # Committed for real, so its event would reach a running AI worker; keep it away
    # from one, lest the worker still holds rows when the test database is emptied.
    route_events("TaskSubmittedEvent", "preference.created")
    drain_queue("preference.created")
    helper = factories.helper()
    photos_before = stored_photos()
    photo = factories.photo_bytes()
    barrier = threading.Barrier(4)
    answers = []

    def submit():
        client = factories.api_client_for(helper)
        barrier.wait()
        try:
            answers.append(client.post(URL, {"photo": upload(photo)}, HTTP_IDEMPOTENCY_KEY="same"))
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [a.status_code for a in answers] == [202] * 4
    assert len({a.json()["id"] for a in answers}) == 1
    assert LaundryTask.objects.count() == 1
    assert OutboxMessage.objects.count() == 1
    assert len(stored_photos() - photos_before) == 1, "the losers' photos were deleted"
    wait_for(lambda: queue_depth("preference.created") >= 1, timeout=30, what="the one event, published by the relay")
    assert len(drain_queue("preference.created")) == 1
