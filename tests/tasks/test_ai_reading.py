"""The whole helper flow with a real AI worker: upload, reading, and unreadable photos."""

import json

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from messaging.contracts import TaskSubmittedEvent
from messaging.models import OutboxMessage, ProcessedEvent
from messaging.outbox import publish_event
from ml.labels import LABEL_SPACES
from ml.models import ModelVersion
from tasks.models import LaundryTask
from tests import factories
from tests.support import drain_queue, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("relay")]


@pytest.fixture(scope="session")
def trained_model_row(django_db_setup, django_db_blocker):
    """Train a tiny model once per run; its artifact stays in this run's media root."""
    with django_db_blocker.unblock():
        call_command("train_model", "--per-class", "2", "--epochs", "1", stdout=open("/dev/null", "w"))
        row = ModelVersion.objects.get(is_active=True)
        return {f.attname: getattr(row, f.attname) for f in ModelVersion._meta.concrete_fields}


@pytest.fixture
def active_model(trained_model_row):
    """The tiny model as the active version (transactional tests empty every table after each test)."""
    return ModelVersion.objects.update_or_create(pk=trained_model_row["id"], defaults=trained_model_row)[0]


def test_an_uploaded_photo_is_read_by_the_ai_worker(probe_worker, active_model):
    helper = factories.helper()
    client = factories.api_client_for(helper)
    photo = SimpleUploadedFile("laundry.jpg", factories.noisy_jpeg(50_000), content_type="image/jpeg")

    accepted = client.post("/api/v1/tasks/", {"photo": photo}, format="multipart")
    assert accepted.status_code == 202

    task_url = accepted.json()["url"]
    body = wait_for(
        lambda: (b := client.get(task_url).json())["status"] == "analyzed" and b,
        timeout=90, what="the AI reading",
    )
    reading = body["reading"]
    assert set(reading["labels"]) == set(LABEL_SPACES)
    for head, label in reading["labels"].items():
        assert label in LABEL_SPACES[head]
        assert 0 <= reading["confidences"][head] <= 1
    assert reading["model_version"] == active_model.version
    assert reading["inference_ms"] > 0
    # in the reading's transaction, the AI published what it read, for its subscribers (audit, the helper's push)
    analyzed = OutboxMessage.objects.get(event_type="TaskAnalyzedEvent")
    assert analyzed.queue == "TaskAnalyzedEvent"  # the routing key: the event type
    assert analyzed.envelope["payload"] == {
        "task_id": body["id"], "branch_id": helper.helper.branch_id, "helper_id": helper.pk,
        "labels": reading["labels"], "confidences": reading["confidences"], "model_version": active_model.version,
    }
    submitted = OutboxMessage.objects.get(event_type="TaskSubmittedEvent")
    assert analyzed.envelope["correlation_id"] == submitted.envelope["correlation_id"]


def submit_directly(photo_name: str) -> tuple[LaundryTask, object]:
    """A task whose event reaches the worker, bypassing the API's photo checks."""
    helper = factories.helper()
    task = LaundryTask.objects.create(
        branch=helper.helper.branch, helper=helper, photo=photo_name, photo_sha256="0" * 64, photo_size=1,
        photo_content_type="image/jpeg",
    )
    message = publish_event(
        TaskSubmittedEvent(task_id=task.pk, branch_id=task.branch_id, helper_id=helper.pk, photo=photo_name)
    )
    return task, message


def dead_letters_of(event_id) -> list:
    return [
        m for m in drain_queue("task.submitted.dlq") if json.loads(m.body)[1]["event"]["event_id"] == str(event_id)
    ]


@pytest.mark.parametrize(
    "photo_content, reason",
    [(None, "has disappeared from storage"), (b"not an image at all", "cannot be decoded")],
    ids=["photo-gone", "photo-undecodable"],
)
def test_an_unreadable_photo_fails_the_task_at_once_and_is_dead_lettered(
    probe_worker, active_model, photo_content, reason
):
    name = "tasks/test/unreadable.jpg"
    default_storage.delete(name)
    if photo_content is not None:
        name = default_storage.save(name, ContentFile(photo_content))

    task, message = submit_directly(name)

    failed = wait_for(
        lambda: LaundryTask.objects.filter(pk=task.pk, status="failed").first(), timeout=60, what="the task to fail"
    )
    assert reason in failed.failure_reason
    assert not hasattr(failed, "reading") or failed.reading is None
    (dead,) = wait_for(lambda: dead_letters_of(message.event_id), timeout=30, what="the dead letter")
    assert dead.headers["retries"] == 0, "a permanent failure is not retried"
    assert not ProcessedEvent.objects.filter(event_id=message.event_id).exists()
