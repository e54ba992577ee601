"""The branch owner's task pages in the admin: the list, the photo, confirm as read, correct and confirm."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.test import Client
from django.test.html import parse_html
from django.utils import timezone
from PIL import Image

from messaging.models import OutboxMessage
from tasks.models import LaundryTask
from tests import factories

pytestmark = pytest.mark.django_db

LIST_URL = "/admin/tasks/laundrytask/"


def change_url(task) -> str:
    return f"{LIST_URL}{task.pk}/change/"


def confirm_url(task) -> str:
    return f"{LIST_URL}{task.pk}/confirm/"


def photo_url(task, size: str | None = None) -> str:
    return f"{LIST_URL}{task.pk}/photo/" + (f"?size={size}" if size else "")


def confirmed_events() -> list[dict]:
    return [row.envelope for row in OutboxMessage.objects.filter(event_type="TaskConfirmedEvent").order_by("id")]


def shown_messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def contains_element(html: str, element: str) -> bool:
    """Whether the page has the element, whatever its attribute order and whitespace."""
    return parse_html(html).count(parse_html(element)) > 0


def submitted_task(at):
    """A task the AI has not read yet."""
    task = factories.analyzed_task(at=at)
    task.reading.delete()
    LaundryTask.objects.filter(pk=task.pk).update(status=LaundryTask.Status.SUBMITTED)
    task.refresh_from_db()
    return task


@pytest.fixture
def owner():
    return factories.user("owner-a", staff=True)


@pytest.fixture
def branch(owner):
    return factories.branch("gangnam-a", owner=owner)


@pytest.fixture
def task(branch):
    return factories.analyzed_task(at=branch, labels={"garment": "shirt", "condition": "stained"}, model_version="v7")


@pytest.fixture
def other_task():
    other_owner = factories.user("owner-b", staff=True)
    return factories.analyzed_task(at=factories.branch("mapo-b", owner=other_owner))


@pytest.fixture
def owner_client(client, owner, branch):
    client.force_login(owner)
    return client


def test_the_list_shows_the_owners_tasks_newest_first_with_photo_reading_and_model(owner_client, branch, task,
                                                                                    other_task):
    newer = factories.analyzed_task(at=branch, labels={"garment": "towel", "condition": "clean"})
    LaundryTask.objects.filter(pk=task.pk).update(created_at=timezone.now() - timedelta(hours=1))

    page = owner_client.get(LIST_URL)

    assert page.status_code == 200
    assert [row.pk for row in page.context["cl"].result_list] == [newer.pk, task.pk]
    html = page.content.decode()
    assert "shirt 90% · stained 90%" in html and "towel 90% · clean 90%" in html
    assert "v7" in html
    assert f'<a href="{photo_url(task)}" target="_blank"' in html
    assert f'src="{photo_url(task)}?size=thumb"' in html
    assert other_task.branch.name not in html and photo_url(other_task) not in html


def test_the_list_filters_by_status_date_and_only_the_owners_branches(owner_client, owner, branch, task,
                                                                       other_task):
    second_branch = factories.branch("gangnam-second", owner=owner)
    waiting = submitted_task(second_branch)
    LaundryTask.objects.filter(pk=task.pk).update(created_at=timezone.now() - timedelta(days=40))

    analyzed = owner_client.get(LIST_URL, {"status__exact": "analyzed"})
    recent = owner_client.get(LIST_URL, {"created_at__gte": str(timezone.now() - timedelta(days=7))})
    by_branch = owner_client.get(LIST_URL, {"branch__id__exact": second_branch.pk})
    other_branch = owner_client.get(LIST_URL, {"branch__id__exact": other_task.branch_id})

    assert [t.pk for t in analyzed.context["cl"].result_list] == [task.pk]
    assert [t.pk for t in recent.context["cl"].result_list] == [waiting.pk]
    assert [t.pk for t in by_branch.context["cl"].result_list] == [waiting.pk]
    assert list(other_branch.context["cl"].result_list) == []
    branch_filter = next(spec for spec in analyzed.context["cl"].filter_specs if spec.title == "branch")
    assert [name for _, name in branch_filter.lookup_choices] == ["Branch gangnam-a", "Branch gangnam-second"]
    assert other_task.branch.name not in analyzed.content.decode()


def test_the_photo_and_its_thumbnail_are_served_to_the_owner(owner_client, task):
    full = owner_client.get(photo_url(task))
    thumb = owner_client.get(photo_url(task, "thumb"))

    assert full.status_code == 200 and full["Content-Type"] == "image/jpeg"
    with task.photo.storage.open(task.photo.name, "rb") as stored:
        assert b"".join(full.streaming_content) == stored.read()
    assert thumb.status_code == 200 and thumb["Content-Type"] == "image/jpeg"
    image = Image.open(io.BytesIO(thumb.content))
    assert max(image.size) <= 240 and image.size[0] > image.size[1]  # the 640x480 photo, scaled down
    assert "private" in thumb["Cache-Control"]
    assert owner_client.get(photo_url(task, "huge")).status_code == 400


def test_another_owners_task_is_not_found_anywhere(owner_client, other_task):
    assert owner_client.get(photo_url(other_task)).status_code == 404
    assert owner_client.get(photo_url(other_task, "thumb")).status_code == 404
    change = owner_client.get(change_url(other_task))
    assert change.status_code == 302 and change["Location"] == "/admin/"
    for button in ("_confirm_as_read", "_correct_and_confirm"):
        data = {button: "", "garment": "towel", "condition": "torn"}
        assert owner_client.post(confirm_url(other_task), data).status_code == 404
        assert owner_client.post(change_url(other_task), data).status_code == 404
    other_task.refresh_from_db()
    assert other_task.status == LaundryTask.Status.ANALYZED and confirmed_events() == []


def test_the_change_page_has_the_confirmation_form_preselected_to_the_reading(owner_client, task):
    page = owner_client.get(change_url(task))

    assert page.status_code == 200
    html = page.content.decode()
    assert f'<form id="confirm-form" method="post" action="{confirm_url(task)}">' in html
    assert "csrfmiddlewaretoken" in html
    for element in (
        '<option value="shirt" selected>shirt</option>',
        '<option value="stained" selected>stained</option>',
        '<option value="towel">towel</option>',
        '<button type="submit" name="_confirm_as_read" class="button default">Confirm as read</button>',
        '<button type="submit" name="_correct_and_confirm" class="button">Correct and confirm</button>',
    ):
        assert contains_element(html, element), element
    assert 'name="garment"' in html and 'name="condition"' in html
    assert "v7" in html and "3 ms" in html  # model version and inference time


def test_confirm_as_read_confirms_the_ai_reading_and_publishes_the_event(owner_client, owner, task):
    response = owner_client.post(confirm_url(task), {"_confirm_as_read": "", "garment": "towel",
                                                     "condition": "torn"}, follow=True)

    assert response.redirect_chain == [(change_url(task), 303)]
    assert shown_messages(response) == [f"Task {task.pk} confirmed as shirt / stained."]
    task.refresh_from_db()
    assert task.status == LaundryTask.Status.CONFIRMED and task.confirmed_by == owner
    assert task.confirmed_labels == {"garment": "shirt", "condition": "stained"}
    (event,) = confirmed_events()
    assert event["payload"]["task_id"] == task.pk
    assert event["payload"]["ai_labels"] == event["payload"]["confirmed_labels"] == task.confirmed_labels
    html = response.content.decode()
    assert 'id="confirm-form"' not in html
    assert "Confirmed as shirt / stained by owner-a." in html
    assert '<div class="readonly">confirmed</div>' in html


def test_correct_and_confirm_stores_the_owners_labels(owner_client, task):
    response = owner_client.post(change_url(task), {"_correct_and_confirm": "", "garment": "towel",
                                                    "condition": "torn"}, follow=True)

    assert response.redirect_chain == [(change_url(task), 303)]
    assert shown_messages(response) == [f"Task {task.pk} confirmed as towel / torn."]
    task.refresh_from_db()
    assert task.confirmed_labels == {"garment": "towel", "condition": "torn"}
    (event,) = confirmed_events()
    assert event["payload"]["ai_labels"] == {"garment": "shirt", "condition": "stained"}
    assert event["payload"]["confirmed_labels"] == {"garment": "towel", "condition": "torn"}


def test_confirming_again_with_the_same_labels_changes_nothing(owner_client, task):
    owner_client.post(confirm_url(task), {"_correct_and_confirm": "", "garment": "towel", "condition": "torn"},
                      follow=True)

    again = owner_client.post(confirm_url(task), {"_correct_and_confirm": "", "garment": "towel", "condition": "torn"},
                              follow=True)

    assert shown_messages(again) == [f"Task {task.pk} was already confirmed as towel / torn; nothing changed."]
    assert len(confirmed_events()) == 1


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"_correct_and_confirm": "", "garment": "hat", "condition": "torn"}, "garment: Unknown label 'hat'"),
        ({"_correct_and_confirm": "", "garment": "towel"}, "condition: Missing"),
        ({"_correct_and_confirm": "", "garment": "towel", "condition": "burnt"}, "condition: Unknown label 'burnt'"),
        ({"garment": "towel", "condition": "torn"}, "Choose “Confirm as read” or “Correct and confirm”."),
    ],
)
def test_invalid_labels_are_refused_and_change_nothing(owner_client, task, data, error):
    response = owner_client.post(confirm_url(task), data, follow=True)

    (message,) = shown_messages(response)
    assert error in message
    assert response.context["messages"]._loaded_messages[0].level_tag == "error"
    task.refresh_from_db()
    assert task.status == LaundryTask.Status.ANALYZED and task.confirmed_labels is None
    assert confirmed_events() == []
    assert 'id="confirm-form"' in response.content.decode()  # still there to try again


def test_a_task_confirmed_with_other_labels_is_not_changed(owner_client, task):
    owner_client.post(confirm_url(task), {"_confirm_as_read": ""}, follow=True)

    response = owner_client.post(confirm_url(task), {"_correct_and_confirm": "", "garment": "towel",
                                                     "condition": "torn"}, follow=True)

    (message,) = shown_messages(response)
    assert message.startswith("Not confirmed:") and "already confirmed" in message
    task.refresh_from_db()
    assert task.confirmed_labels == {"garment": "shirt", "condition": "stained"}
    assert len(confirmed_events()) == 1


def test_a_task_without_a_reading_has_no_form_and_cannot_be_confirmed(owner_client, branch):
    waiting = submitted_task(branch)

    page = owner_client.get(change_url(waiting))
    response = owner_client.post(confirm_url(waiting), {"_confirm_as_read": ""}, follow=True)

    assert 'id="confirm-form"' not in page.content.decode()
    assert "There is no AI reading to confirm yet (the task is submitted)" in page.content.decode()
    (message,) = shown_messages(response)
    assert "has no AI reading to confirm" in message
    waiting.refresh_from_db()
    assert waiting.status == LaundryTask.Status.SUBMITTED and confirmed_events() == []


def test_the_confirmation_is_csrf_protected(owner, task):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(owner)

    assert browser.post(confirm_url(task), {"_confirm_as_read": ""}).status_code == 403
    task.refresh_from_db()
    assert task.status == LaundryTask.Status.ANALYZED


def test_confirm_selected_as_read_reports_what_it_confirmed_and_skipped(owner_client, branch, task, other_task):
    already = factories.analyzed_task(at=branch)
    owner_client.post(confirm_url(already), {"_confirm_as_read": ""}, follow=True)
    waiting = submitted_task(branch)

    response = owner_client.post(LIST_URL, {
        "action": "confirm_as_read", "_selected_action": [task.pk, already.pk, waiting.pk, other_task.pk],
    }, follow=True)

    assert shown_messages(response) == [
        f"1 task(s) confirmed as read: {task.pk}.",
        f"2 skipped: task {already.pk} (already confirmed); "
        f"task {waiting.pk} (has no AI reading to confirm; it is submitted).",
    ]
    task.refresh_from_db()
    other_task.refresh_from_db()
    assert task.status == LaundryTask.Status.CONFIRMED
    assert other_task.status == LaundryTask.Status.ANALYZED  # another owner's id is not even selected
    assert [event["payload"]["task_id"] for event in confirmed_events()] == [already.pk, task.pk]


def test_owners_cannot_add_edit_or_delete_tasks(owner_client, task):
    assert owner_client.get(f"{LIST_URL}add/").status_code == 403
    assert owner_client.get(f"{LIST_URL}{task.pk}/delete/").status_code == 403
    assert owner_client.post(f"{LIST_URL}{task.pk}/delete/", {"post": "yes"}).status_code == 403
    assert owner_client.post(change_url(task), {"note": "changed", "status": "confirmed"}).status_code == 403
    page = owner_client.get(LIST_URL)
    assert "delete_selected" not in page.content.decode()
    assert LaundryTask.objects.filter(pk=task.pk, status=LaundryTask.Status.ANALYZED, note="").exists()


def test_a_superuser_sees_every_task_but_confirms_only_in_branches_they_own(client, task, other_task):
    admin_user = factories.user("root", superuser=True)
    client.force_login(admin_user)

    page = client.get(LIST_URL)
    change = client.get(change_url(task))
    refused = client.post(confirm_url(task), {"_confirm_as_read": ""}, follow=True)

    assert {t.pk for t in page.context["cl"].result_list} == {task.pk, other_task.pk}
    assert client.get(photo_url(other_task, "thumb")).status_code == 200
    assert 'id="confirm-form"' not in change.content.decode()
    assert "Only the owner of Branch gangnam-a confirms its tasks." in change.content.decode()
    assert shown_messages(refused) == ["Only the owner of Branch gangnam-a confirms its tasks."]
    assert confirmed_events() == []


def test_a_staff_user_without_a_branch_sees_no_task(client, task):
    client.force_login(factories.user("staff-only", staff=True))

    assert client.get(LIST_URL).status_code == 403
    assert client.get(photo_url(task)).status_code == 404
    assert client.post(confirm_url(task), {"_confirm_as_read": ""}).status_code == 404


def test_a_png_with_transparency_gets_a_jpeg_thumbnail(owner_client, branch):
    buffer = io.BytesIO()
    Image.new("RGBA", (300, 600), (200, 10, 10, 128)).save(buffer, format="PNG")
    task = factories.analyzed_task(at=branch, photo=buffer.getvalue())

    thumb = owner_client.get(photo_url(task, "thumb"))

    assert thumb.status_code == 200 and thumb["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size == (120, 240)


def test_a_photo_missing_from_storage_is_a_404_not_an_error(owner_client, task):
    task.photo.storage.delete(task.photo.name)

    assert owner_client.get(photo_url(task)).status_code == 404
    assert owner_client.get(photo_url(task, "thumb")).status_code == 404
    assert owner_client.get(change_url(task)).status_code == 200  # the page still opens
