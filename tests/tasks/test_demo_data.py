"""load_demo_data gives each demo helper three tasks to be read, once however often it runs."""

import io

import pytest
from django.core.management import call_command

from messaging.models import OutboxMessage
from tasks.models import LaundryTask
from tasks.selectors import task_list_for_owner

pytestmark = pytest.mark.django_db


def test_each_demo_helper_submits_three_photos_once():
    call_command("load_demo_data", stdout=io.StringIO())
    out = io.StringIO()
    call_command("load_demo_data", stdout=out)

    assert "demo tasks of helper1 at Gangnam Station Laundry: 0 new" in out.getvalue()
    tasks = LaundryTask.objects.select_related("helper", "branch")
    assert sorted((task.helper.username, task.branch.code) for task in tasks) == (
        [("helper1", "gangnam")] * 3 + [("helper2", "mapo")] * 3)
    assert {task.status for task in tasks} == {LaundryTask.Status.SUBMITTED}
    assert {task.photo_content_type for task in tasks} == {"image/jpeg"}
    assert OutboxMessage.objects.filter(event_type="TaskSubmittedEvent").count() == 6  # the AI workers read them
    owner1 = tasks.filter(branch__code="gangnam").first().branch.owner
    assert {task.helper.username for task in task_list_for_owner(owner=owner1)} == {"helper1"}
