"""Confirmed readings become training samples (the `ml.record_training_sample` consumer)."""

import uuid

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import override_settings

from messaging import broker
from messaging.contracts import TaskConfirmedEventV1
from messaging.models import ProcessedEvent
from messaging.outbox import publish_event
from ml.models import RetrainingRun, TrainingSample
from ml.training_data import SampleRejected, split_for, training_sample_record
from tests import factories
from tests.support import wait_for


def record(task_id: int = 1, photo: str | None = None, labels=None, **overrides):
    if photo is None:
        photo = default_storage.save(f"tasks/1/{uuid.uuid4().hex}.jpg", ContentFile(factories.photo_bytes()))
    fields = dict(
        task_id=task_id, branch_id=1, photo=photo, labels=labels or {"garment": "towel", "condition": "clean"},
        ai_labels={"garment": "shirt", "condition": "clean"}, model_version="v1", confirmed_by=5,
        confirmed_at=None, event_id=uuid.uuid4(),
    )
    fields.update(overrides)
    return training_sample_record(**fields)


@pytest.mark.django_db
def test_a_sample_keeps_a_copy_of_the_photo_the_confirmed_labels_and_the_source_version():
    photo = default_storage.save("tasks/1/original.jpg", ContentFile(factories.photo_bytes()))

    sample, created = record(task_id=7, photo=photo)

    assert created
    assert sample.labels == {"garment": "towel", "condition": "clean"}
    assert sample.ai_labels == {"garment": "shirt", "condition": "clean"}
    assert sample.corrected is True
    assert sample.source_model_version == "v1"
    assert sample.photo.name.startswith(f"training/{sample.photo_sha256[:2]}/")
    default_storage.delete(photo)  # the task's photo may go; the sample keeps its copy
    assert sample.photo.open("rb").read() == factories.photo_bytes()


@pytest.mark.django_db
def test_recording_a_task_twice_keeps_one_sample_and_one_photo_per_content():
    first, _ = record(task_id=1)
    again, created = record(task_id=1)
    same_photo_other_task, _ = record(task_id=2)

    assert not created and again.pk == first.pk
    assert TrainingSample.objects.count() == 2
    assert same_photo_other_task.photo.name == first.photo.name
    assert same_photo_other_task.split == first.split  # one photo, one side


def test_the_held_out_side_follows_the_photo_hash_and_takes_about_the_configured_share():
    hashes = [uuid.uuid4().hex * 2 for _ in range(2000)]
    held_out = sum(split_for(h) == "holdout" for h in hashes)

    assert all(split_for(h) == split_for(h) for h in hashes[:50])
    assert 300 < held_out < 500  # 20 % of 2000


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("labels", "message"),
    [({"garment": "scarf", "condition": "clean"}, "unknown garment 'scarf'"),
     ({"garment": "shirt"}, "expected labels for")],
)
def test_labels_outside_the_vocabulary_are_rejected_for_good(labels, message):
    with pytest.raises(SampleRejected, match=message):
        record(labels=labels)
    assert TrainingSample.objects.count() == 0


@pytest.mark.django_db
def test_a_vanished_photo_is_rejected_for_good():
    with pytest.raises(SampleRejected, match="has disappeared"):
        record(photo="tasks/1/gone.jpg")
    assert TrainingSample.objects.count() == 0


@pytest.mark.django_db
@override_settings(ML_RETRAIN_MIN_NEW_SAMPLES=3)
def test_enough_new_samples_queue_one_retraining_run(django_capture_on_commit_callbacks):
    from ml.retraining import retrain_if_due

    for task_id in (1, 2):
        record(task_id=task_id, photo=None)
        assert retrain_if_due() is None
    record(task_id=3)
    with django_capture_on_commit_callbacks() as callbacks:
        run = retrain_if_due()
    assert run is not None and run.status == "queued" and run.trigger == "samples"
    assert len(callbacks) == 1  # the ml.retrain job, sent once the transaction commits
    record(task_id=4)
    assert retrain_if_due() is None  # joins the queued run
    assert RetrainingRun.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_confirmation_becomes_one_sample_even_when_the_event_is_delivered_twice(mlops_worker, relay):
    owner = factories.user(staff=True)
    task = factories.analyzed_task(at=factories.branch(owner=owner), labels={"garment": "sock", "condition": "torn"})

    response = factories.api_client_for(owner).post(
        f"/api/v1/tasks/{task.pk}/confirm/", {"labels": {"garment": "sock", "condition": "clean"}}, format="json"
    )
    assert response.status_code == 200

    sample = wait_for(lambda: TrainingSample.objects.filter(task_id=task.pk).first(), timeout=60,
                      what="the training sample")
    assert sample.labels == {"garment": "sock", "condition": "clean"}
    assert sample.ai_labels == {"garment": "sock", "condition": "torn"}
    assert sample.photo_sha256 == task.photo_sha256
    assert sample.source_model_version == "v1"

    # RabbitMQ redelivers the same event (same event_id): no second sample
    from messaging.models import OutboxMessage

    envelope = OutboxMessage.objects.get(event_type="TaskConfirmedEvent").envelope
    broker.publish_envelope("task.confirmed", envelope)
    wait_for(lambda: "skipped: already processed" in mlops_worker.log() and envelope["event_id"] in mlops_worker.log(),
             timeout=60, what="the duplicate to be skipped")
    assert TrainingSample.objects.filter(task_id=task.pk).count() == 1
    assert ProcessedEvent.objects.filter(consumer="ml.record_training_sample").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_version_1_event_still_in_flight_is_accepted(mlops_worker, relay):
    photo = default_storage.save("tasks/9/v1.jpg", ContentFile(factories.photo_bytes(colour=(200, 10, 10))))

    publish_event(TaskConfirmedEventV1(
        task_id=4242, branch_id=9, photo=photo, ai_labels={"garment": "dress", "condition": "clean"},
        confirmed_labels={"garment": "dress", "condition": "stained"}, model_version="v1", confirmed_by=3,
    ))

    sample = wait_for(lambda: TrainingSample.objects.filter(task_id=4242).first(), timeout=60,
                      what="the sample of the v1 event")
    assert sample.labels == {"garment": "dress", "condition": "stained"}
    assert len(sample.photo_sha256) == 64  # computed from the photo: v1 does not carry it

