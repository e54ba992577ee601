"""In a real browser, through gunicorn: an owner corrects an AI reading and confirms it; the MLOps worker gets it.

Then a second owner signs in and finds no trace of that task: not in the list, its change
page "doesn't exist", its photo is a 404.
"""

from __future__ import annotations

import io

import pytest
from selenium.webdriver.support.select import Select

from messaging.models import OutboxMessage, ProcessedEvent
from ml.models import TrainingSample
from ml.synthetic import draw_sample
from tasks.models import LaundryTask, Reading
from tasks.services import task_confirm
from tests import factories
from tests.support import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

TASKS = "/admin/tasks/laundrytask/"
DOES_NOT_EXIST = "doesn\N{RIGHT SINGLE QUOTATION MARK}t exist"  # the admin's "… doesn’t exist. Perhaps it was deleted?"


def garment_photo(garment: str, condition: str, number: int = 0) -> bytes:
    """A JPEG of a synthetic garment (the pictures the model is trained on), 320 pixels wide."""
    buffer = io.BytesIO()
    draw_sample(garment=garment, condition=condition, image_size=320, seed=11, number=number).save(
        buffer, format="JPEG", quality=85
    )
    return buffer.getvalue()


def task_read_as(branch, *, photo: tuple[str, str], read: tuple[str, str], confidences=(0.9, 0.8),
                 model_version: str = "v3") -> LaundryTask:
    """A task whose photo shows `photo` (garment, condition) and that the AI read as `read`."""
    task = factories.analyzed_task(
        at=branch, labels={"garment": read[0], "condition": read[1]}, model_version=model_version,
        photo=garment_photo(*photo),
    )
    Reading.objects.filter(task=task).update(
        confidences={"garment": confidences[0], "condition": confidences[1]}
    )
    return task


def change_path(task: LaundryTask) -> str:
    return f"{TASKS}{task.pk}/change/"


def photo_path(task: LaundryTask) -> str:
    return f"{TASKS}{task.pk}/photo/"


@pytest.fixture
def two_owners():
    north_owner = factories.user("owner-north", staff=True)
    south_owner = factories.user("owner-south", staff=True)
    north = factories.branch("north", owner=north_owner)
    south = factories.branch("south", owner=south_owner)
    return (north_owner, north), (south_owner, south)


def test_an_owner_corrects_a_reading_the_mlops_worker_learns_it_and_another_owner_cannot_reach_it(
    page, two_owners, mlops_worker, relay
):
    (owner, north), (other_owner, south) = two_owners
    # the owner's list: a task confirmed earlier, two read ones; the newest is read wrongly
    earlier = task_read_as(north, photo=("dress", "clean"), read=("dress", "clean"), confidences=(0.97, 0.91))
    task_confirm(task_id=earlier.pk, owner=owner)
    task_read_as(north, photo=("trousers", "stained"), read=("trousers", "stained"), confidences=(0.88, 0.64))
    task = task_read_as(north, photo=("towel", "torn"), read=("shirt", "stained"), confidences=(0.52, 0.47))
    south_task = task_read_as(south, photo=("sock", "clean"), read=("sock", "clean"))

    # --- the owner finds the task in their list, thumbnail and all --------------------------------
    page.login(owner)
    page.open(TASKS)
    page.assert_styled()
    links = {a.get_attribute("pathname") for a in page.find_all("#result_list a")}
    assert change_path(task) in links and change_path(earlier) in links
    assert change_path(south_task) not in links  # another branch's task
    thumbnail = page.find(f'#result_list a[href$="{photo_path(task)}"] img')
    assert thumbnail.get_attribute("src").endswith(f"{photo_path(task)}?size=thumb")
    assert page.wait_until(lambda: page.driver.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth", thumbnail)), "the thumbnail did not load"
    page.report_screenshot("owner-task-list")

    # --- opens it: the AI reading, and the form preselected to it -----------------------------------
    page.click_and_wait(page.find(f'#result_list a[href$="{change_path(task)}"]'))
    assert page.path == change_path(task)
    page.assert_styled()
    assert "shirt 52% · stained 47%" in page.text and "v3" in page.text
    form = page.find("form#confirm-form")
    garment, condition = Select(form.find_element("name", "garment")), Select(form.find_element("name", "condition"))
    assert (garment.first_selected_option.get_attribute("value"),
            condition.first_selected_option.get_attribute("value")) == ("shirt", "stained")
    page.report_screenshot("owner-task-reading", full_page=True)
    requested = page.assert_nothing_from_another_host()
    assert any("/static/admin/css/base." in url for url in requested)  # the list page's, or this one's

    # --- corrects it to what the photo shows and confirms --------------------------------------------
    garment.select_by_value("towel")
    condition.select_by_value("torn")
    page.click_and_wait(form.find_element("css selector", 'button[name="_correct_and_confirm"]'))

    assert page.path == change_path(task)
    success = page.find(".messagelist .success").text
    assert "confirmed" in success and "towel / torn" in success
    assert not page.find_all("form#confirm-form")  # confirmed once; nothing left to confirm
    task.refresh_from_db()
    assert task.status == LaundryTask.Status.CONFIRMED
    assert task.confirmed_labels == {"garment": "towel", "condition": "torn"}
    assert task.confirmed_by_id == owner.pk

    # --- the event goes through the outbox to the MLOps worker, which keeps a training sample ----------
    event = OutboxMessage.objects.get(event_type="TaskConfirmedEvent", envelope__payload__task_id=task.pk)

    def sample():
        return TrainingSample.objects.filter(task_id=task.pk).first()

    training_sample = wait_for(sample, timeout=60, interval=0.2, what=f"the training sample of task {task.pk}")
    assert training_sample.labels == {"garment": "towel", "condition": "torn"}
    assert training_sample.ai_labels == {"garment": "shirt", "condition": "stained"}
    assert training_sample.corrected and training_sample.source_model_version == "v3"
    assert ProcessedEvent.objects.filter(consumer="ml.record_training_sample", event_id=event.event_id).exists()

    # --- the photo is the owner's to open ---------------------------------------------------------------
    assert page.fetch_status(photo_path(task)) == 200
    assert page.fetch_status(photo_path(task) + "?size=thumb") == 200

    # --- another owner: no list row, no change page, no photo ---------------------------------------------
    page.login(other_owner)
    page.open(TASKS)
    links = {a.get_attribute("pathname") for a in page.find_all("#result_list a")}
    assert change_path(south_task) in links
    assert not {change_path(t) for t in (task, earlier)} & links
    assert f"photo of task {task.pk}" not in page.driver.page_source

    page.open(change_path(task))
    assert page.path == "/admin/"  # the admin's redirect for an object that "doesn't exist"
    assert DOES_NOT_EXIST in page.find(".messagelist .warning").text
    assert "towel" not in page.text and "shirt" not in page.text

    assert page.fetch_status(photo_path(task)) == 404
    assert page.fetch_status(photo_path(task) + "?size=thumb") == 404
    assert page.fetch_status(photo_path(south_task)) == 200  # their own photo, for contrast
    page.assert_nothing_from_another_host()
