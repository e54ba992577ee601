"""tasks.services.reading_record: the AI worker's one statement per reading."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tasks.models import LaundryTask, Reading
from tasks.services import reading_record
from tests import factories

pytestmark = pytest.mark.django_db


def a_task(status=LaundryTask.Status.SUBMITTED):
    user = factories.helper()
    return LaundryTask.objects.create(branch=user.helper.branch, helper=user, photo="tasks/x.jpg",
                                      photo_sha256="0" * 64, photo_size=1, photo_content_type="image/jpeg",
                                      status=status, failure_reason="earlier failure")


def record(task, garment="shirt", version="v1"):
    return reading_record(task_id=task.pk, labels={"garment": garment, "condition": "clean"},
                          confidences={"garment": 0.9, "condition": 0.8}, model_version=version, inference_ms=4.5)


@pytest.mark.parametrize("status", ["submitted", "analyzing", "failed"])
def test_a_reading_is_stored_and_marks_its_task_analyzed_in_one_statement(status):
    task = a_task(status)
    with CaptureQueriesContext(connection) as captured:
        reading_id = record(task)

    assert len(captured.captured_queries) == 1
    reading = Reading.objects.get(pk=reading_id)
    assert (reading.task_id, reading.labels, reading.confidences, reading.model_version, reading.inference_ms) == (
        task.pk, {"garment": "shirt", "condition": "clean"}, {"garment": 0.9, "condition": 0.8}, "v1", 4.5)
    task.refresh_from_db()
    assert (task.status, task.failure_reason) == ("analyzed", "")


def test_a_second_reading_replaces_the_first():
    task = a_task()
    first = record(task)
    second = record(task, garment="towel", version="v2")

    assert first == second
    assert Reading.objects.filter(task=task).values_list("labels__garment", "model_version").get() == ("towel", "v2")


def test_a_confirmed_task_keeps_its_status():
    task = a_task(LaundryTask.Status.CONFIRMED)
    record(task)

    task.refresh_from_db()
    assert task.status == "confirmed"
