"""In a real browser, through gunicorn: the operator follows one upload through every process.

The stack is real: the web process takes the upload, the relay publishes its outbox rows, the AI
worker reads the photo and publishes TaskAnalyzedEvent, the notify pool pushes "your photo was
read" to the helper, the audit pool records both events. The admin's timeline of the task shows it all in time order.
With WRITE_SCREENSHOTS=docs/screenshots it writes docs/screenshots/operator-timeline.png.
"""

from __future__ import annotations

import uuid

import pytest
import requests
from django.core.management import call_command

from audit.models import EventLogEntry
from messaging.models import EventActivity
from ml.models import ModelVersion
from notifications.models import Notification
from tests import factories
from tests.support import CommandProcess, WorkerProcess, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def trained_model_row(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        call_command("train_model", "--per-class", "2", "--epochs", "1", stdout=open("/dev/null", "w"))
        row = ModelVersion.objects.get(is_active=True)
        return {f.attname: getattr(row, f.attname) for f in ModelVersion._meta.concrete_fields}


@pytest.fixture(scope="module")
def stack_workers(django_db_setup, broker_vhost, log_dir):
    """The relay and the AI, notify and audit pools as the Procfile runs them (their -Q lists)."""
    workers = [
        CommandProcess("relay_outbox", "--interval", "0.2", name="timeline-relay", log_dir=log_dir,
                       ready="outbox relay started"),
        WorkerProcess(["task.submitted"], name="timeline-ai", log_dir=log_dir, TORCH_NUM_THREADS="1"),
        WorkerProcess(["preference.created", "task.analyzed.push"], name="timeline-notify", log_dir=log_dir),
        WorkerProcess(["audit"], name="timeline-audit", log_dir=log_dir),
    ]
    try:
        for worker in workers:
            worker.launch()
        for worker in workers:
            worker.wait_ready(120)
        yield workers
    finally:
        for worker in workers:
            worker.stop()


def test_the_operator_follows_one_upload_from_the_request_to_the_helpers_push(
    page, web, stack_workers, trained_model_row
):
    ModelVersion.objects.update_or_create(pk=trained_model_row["id"], defaults=trained_model_row)
    operator = factories.user("operator", staff=True, superuser=True)
    helper = factories.helper(factories.branch("north"), username="helper-anna")
    response = requests.post(
        f"{web.url}/api/v1/tasks/",
        headers={"Authorization": f"Token {factories.api_token(helper)}", "Idempotency-Key": str(uuid.uuid4()),
                 "X-Request-ID": "upload-anna-1"},
        files={"photo": ("shirt.jpg", factories.photo_bytes(), "image/jpeg")}, timeout=30,
    )
    assert response.status_code == 202, response.text
    task_id = response.json()["id"]

    note = wait_for(lambda: Notification.objects.filter(recipient=helper, kind="task_analyzed").first(),
                    timeout=120, what="the helper's 'your photo was read' notification")
    assert note.body.startswith(f"Your photo of task {task_id} was read: ")
    wait_for(lambda: EventLogEntry.objects.filter(task_id=task_id).count() == 2, timeout=60,
             what="both events in the audit log")
    wait_for(lambda: EventActivity.objects.filter(task_id=task_id, kind="processed").count() == 4, timeout=60,
             what="four subscribers' processed records")
    assert set(EventLogEntry.objects.filter(task_id=task_id).values_list("correlation_id", flat=True)) == \
        {"upload-anna-1"}

    page.login(operator)
    page.open(f"/admin/audit/eventlogentry/timeline/?q={task_id}")

    text = page.text
    steps = [row.text for row in page.find_all("#timeline tbody tr")]
    assert f"task {task_id}:" in text
    # in real time: the AI's activity row commits with the reading, the push's after the notification
    order = ["request: task", "published to fitness.events", "effect: reading stored", "ml.read_task_photo: processed",
             "notification to helper-anna", "notifications.send_task_analyzed: processed"]
    positions = [next(i for i, step in enumerate(steps) if marker in step) for marker in order]
    assert positions[0] == 0 and positions == sorted(positions), steps
    for subscriber in ("audit.record_event", "ml.read_task_photo", "notifications.send_task_analyzed"):
        assert f"{subscriber}: processed" in text
    assert "published to fitness.events" in text and "recorded in the event log" in text
    page.assert_styled()
    page.report_screenshot("operator-timeline", full_page=True)

    page.open("/admin/audit/eventlogentry/timeline/?q=no-such-request")
    assert "no event has the correlation id 'no-such-request'" in page.text
