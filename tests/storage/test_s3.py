"""Photos and model files on S3, for real: moto's S3 server, boto3 through django-storages,
and the Procfile's processes (gunicorn, the AI and mlops workers, train_model) with the
bucket's variables in their environment (see conftest.py)."""

from __future__ import annotations

import hashlib
import io
import random

import pytest
import requests
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import DatabaseError
from PIL import Image

from messaging.models import OutboxMessage
from ml.labels import LABEL_SPACES
from ml.models import ModelVersion, RetrainingRun, TrainingSample
from tasks.models import LaundryTask
from tests import factories
from tests.storage.conftest import TINY_SIZE, on_disk, session_cookie
from tests.support import refuse_the_uploads_event_row, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def token_for(user) -> dict[str, str]:
    return {"Authorization": f"Token {factories.api_token(user)}"}


def upload(stack, user, photo: bytes, name: str = "laundry.jpg", content_type: str = "image/jpeg"):
    return requests.post(
        f"{stack.web_url}/api/v1/tasks/", files={"photo": (name, photo, content_type)}, headers=token_for(user),
        timeout=60,
    )


def reading_of(stack, user, task_id: int, timeout: float = 300) -> dict:
    def analyzed():
        body = requests.get(f"{stack.web_url}/api/v1/tasks/{task_id}/", headers=token_for(user), timeout=30).json()
        return body if body["status"] in ("analyzed", "failed") else None

    body = wait_for(analyzed, timeout=timeout, interval=0.3, what=f"the AI reading of task {task_id} ({stack.logs()})")
    assert body["status"] == "analyzed", body
    return body["reading"]


# --- model files -------------------------------------------------------------------------------

def test_train_model_stores_the_model_file_in_the_bucket_and_the_ai_worker_loads_it_from_there(s3_stack):
    name = s3_stack.model_row["artifact"].name
    assert name.startswith("models/") and name.endswith(".pt")
    assert name in s3_stack.s3.keys("models/")
    assert not on_disk(name)
    assert len(s3_stack.s3.get(name)) > 10_000  # a state dict, not an empty object
    # ML_PRELOAD=1: the AI worker loaded it when it started, from the bucket
    wait_for(lambda: "not preloaded" in s3_stack.ai_worker.log() or "loaded model" in s3_stack.ai_worker.log(),
             timeout=60, what=f"the AI worker's model preload ({s3_stack.ai_worker.log_path})")
    assert "not preloaded" not in s3_stack.ai_worker.log()


# --- the helper's upload and the AI reading ------------------------------------------------------

def noisy_jpeg_of_side(side: int) -> bytes:
    rng = random.Random(side)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


# 3150 px of noise: about 8.9 MB, above boto3's 8 MiB multipart threshold and below the 10 MB limit
@pytest.mark.parametrize("side", [250, 3150], ids=["small", "multipart"])
def test_an_upload_is_stored_in_the_bucket_and_the_ai_worker_reads_it_from_there(s3_stack, active_model, side):
    helper = factories.helper()
    photo = noisy_jpeg_of_side(side)
    if side == 3150:
        assert 8 * 1024 * 1024 < len(photo) < 9_900_000

    accepted = upload(s3_stack, helper, photo)

    assert accepted.status_code == 202, accepted.text
    task = LaundryTask.objects.get(pk=accepted.json()["id"])
    assert task.photo.name.startswith(f"tasks/{task.branch_id}/")
    assert task.photo.name in s3_stack.s3.keys("tasks/")
    assert s3_stack.s3.get(task.photo.name) == photo
    assert s3_stack.s3.head(task.photo.name)["ContentType"] == "image/jpeg"
    assert not on_disk(task.photo.name)

    reading = reading_of(s3_stack, helper, task.pk)
    assert reading["model_version"] == active_model.version
    assert set(reading["labels"]) == set(LABEL_SPACES)


@pytest.mark.parametrize(
    "photo, name, status",
    [
        (b"just some text, honestly", "laundry.jpg", 400),
        (factories.photo_bytes()[:3000], "truncated.jpg", 400),
        (factories.png_header_only(30000, 30000), "bomb.png", 400),
        (factories.photo_bytes("GIF"), "a.gif", 400),
        (b"\xff\xd8" + b"\0" * 10_100_000, "huge.jpg", 413),
    ],
    ids=["not-an-image", "truncated", "decompression-bomb", "gif", "over-10-mb"],
)
def test_a_refused_upload_leaves_no_object_in_the_bucket(s3_stack, photo, name, status):
    helper = factories.helper()
    before = s3_stack.s3.keys()

    refused = upload(s3_stack, helper, photo, name=name)

    assert refused.status_code == status, refused.text
    assert s3_stack.s3.keys() == before
    assert LaundryTask.objects.count() == 0
    assert OutboxMessage.objects.count() == 0


def test_a_task_that_cannot_be_saved_after_its_photo_was_stored_leaves_no_object(s3_storage, monkeypatch):
    from tasks.services import task_submit

    helper = factories.helper()
    before = s3_storage.keys()
    refused = refuse_the_uploads_event_row(monkeypatch)  # the task's statement fails with its outbox row
    photo = SimpleUploadedFile("laundry.jpg", factories.photo_bytes(), content_type="image/jpeg")
    with pytest.raises(DatabaseError):
        task_submit(helper=helper, branch=helper.helper.branch, photo=photo)

    (name, in_the_bucket), = refused
    assert name.startswith("tasks/") and in_the_bucket  # the photo had reached the bucket...
    assert s3_storage.keys() == before  # ...and is gone again
    assert LaundryTask.objects.count() == 0


# --- the owner's admin: the photo and its thumbnail -----------------------------------------------

def test_the_owner_sees_the_photo_and_its_thumbnail_from_the_bucket(s3_stack, s3_storage):
    owner = factories.user(staff=True)
    photo = factories.photo_bytes(size=(1200, 900))
    task = factories.analyzed_task(at=factories.branch(owner=owner), photo=photo)
    assert task.photo.name in s3_storage.keys("tasks/")
    url = f"{s3_stack.web_url}/admin/tasks/laundrytask/{task.pk}/photo/"
    cookies = session_cookie(owner)

    full = requests.get(url, cookies=cookies, timeout=60)
    thumb = requests.get(url, params={"size": "thumb"}, cookies=cookies, timeout=60)

    assert full.status_code == 200, full.text[:500]
    assert full.content == photo
    assert full.headers["Content-Type"] == "image/jpeg"
    assert full.headers["Content-Length"] == str(len(photo))
    assert thumb.status_code == 200, thumb.text[:500]
    assert thumb.headers["Content-Type"] == "image/jpeg"
    with Image.open(io.BytesIO(thumb.content)) as image:
        assert image.format == "JPEG" and max(image.size) == 240

    # another owner's task looks absent; a photo gone from the bucket is a 404, not a 500
    stranger = requests.get(url, cookies=session_cookie(factories.user(staff=True)), timeout=60)
    assert stranger.status_code == 404
    s3_storage.delete(task.photo.name)
    assert requests.get(url, cookies=cookies, timeout=60).status_code == 404
    assert requests.get(url, params={"size": "thumb"}, cookies=cookies, timeout=60).status_code == 404


# --- training samples ---------------------------------------------------------------------------------

def test_confirmed_photos_are_copied_to_training_in_the_bucket_once_per_photo(s3_stack, s3_storage):
    owner = factories.user(staff=True)
    at = factories.branch(owner=owner)
    photo = factories.photo_bytes(size=(320, 240), colour=(200, 30, 30))
    sha256 = hashlib.sha256(photo).hexdigest()
    first, second = (factories.analyzed_task(at=at, photo=photo) for _ in range(2))

    for task in (first, second):
        confirmed = requests.post(
            f"{s3_stack.web_url}/api/v1/tasks/{task.pk}/confirm/", json={}, headers=token_for(owner), timeout=60
        )
        assert confirmed.status_code == 200, confirmed.text
    wait_for(lambda: TrainingSample.objects.count() == 2, timeout=300,
             what=f"two training samples ({s3_stack.mlops_worker.log_path})")
    samples = list(TrainingSample.objects.order_by("task_id"))

    expected = f"training/{sha256[:2]}/{sha256}.jpg"
    assert [s.photo.name for s in samples] == [expected, expected]  # content-addressed: one object
    assert {s.task_id for s in samples} == {first.pk, second.pk}
    assert {k for k in s3_storage.keys("training/") if sha256 in k} == {expected}
    assert s3_storage.get(expected) == photo
    assert not on_disk(expected)


def test_a_training_copy_that_appears_meanwhile_is_shared_not_duplicated(s3_storage, monkeypatch):
    """Two deliveries of the same photo at once: both see no copy, both store it; one object remains."""
    import uuid

    from django.core.files.storage import default_storage

    from ml.training_data import training_sample_record

    photo = factories.photo_bytes(size=(200, 200), colour=(10, 200, 10))
    sha256 = hashlib.sha256(photo).hexdigest()
    task = factories.analyzed_task(photo=photo)
    expected = f"training/{sha256[:2]}/{sha256}.jpg"
    before = s3_storage.keys("training/")
    storage_class = type(default_storage._wrapped)
    exists, calls = storage_class.exists, []

    def exists_meanwhile(self, name):
        calls.append(name)
        if len(calls) == 1:  # the consumer looks first: no copy yet...
            s3_storage.client.put_object(Bucket=s3_storage.bucket, Key=name, Body=photo)  # ...then the other stores it
            return False
        return exists(self, name)

    monkeypatch.setattr(storage_class, "exists", exists_meanwhile)

    sample, created = training_sample_record(
        task_id=task.pk, branch_id=task.branch_id, photo=task.photo.name, labels=task.reading.labels,
        ai_labels=task.reading.labels, model_version="v1", confirmed_by=None, confirmed_at=None,
        event_id=uuid.uuid4(), photo_sha256=sha256,
    )

    assert calls and calls[0] == expected
    assert created and sample.photo.name == expected
    assert s3_storage.keys("training/") - before == {expected}


# --- retraining: the candidate's file in the bucket, read by the AI worker ---------------------------

def test_retraining_on_the_mlops_worker_stores_the_candidate_in_the_bucket_and_the_ai_worker_reads_with_it(
    s3_stack, s3_storage, active_model
):
    from ml.retraining import retrain_request, send_retrain_job
    from ml.services import model_version_activate
    from ml.synthetic import generate
    from tests.ml.test_retraining import shifted, store_samples, what_the_model_reads

    pictures = [image for image, _ in generate(per_class=3, image_size=TINY_SIZE, seed=5)]
    corrected = [shifted(labels) for labels in what_the_model_reads(active_model, pictures)]  # v1 from the bucket
    before = s3_storage.keys("training/")
    store_samples(pictures[:30], corrected[:30], split="train")
    store_samples(pictures[30:], corrected[30:], split="holdout")
    assert len(s3_storage.keys("training/") - before) == len(pictures)

    run, _ = retrain_request(trigger=RetrainingRun.Trigger.COMMAND, requested_by="tests/storage")

    def finished():
        run.refresh_from_db()
        if run.status == RetrainingRun.Status.QUEUED:
            # the job's send fails when the shared broker is too busy to answer in time; beat's sweep
            # sends it again in production, the test does it here (a job with no queued run does nothing)
            send_retrain_job()
        return run.status in RetrainingRun.FINISHED

    wait_for(finished, timeout=600, interval=5,
             what=f"the retraining run on the mlops worker ({s3_stack.mlops_worker.log_path})")

    assert run.status in (RetrainingRun.Status.PROMOTED, RetrainingRun.Status.REJECTED), run.reason
    candidate = run.candidate
    assert candidate.parent_id == active_model.pk
    assert candidate.artifact.name in s3_storage.keys("models/")
    assert candidate.artifact.name != active_model.artifact.name
    assert not on_disk(candidate.artifact.name)
    if run.status != RetrainingRun.Status.PROMOTED:
        model_version_activate(version=candidate, by="tests/storage")
    assert ModelVersion.objects.get(is_active=True) == candidate

    # the running AI worker switches to it (ML_RELOAD_CHECK_SECONDS) and loads it from the bucket
    helper = factories.helper()

    def read_by_candidate():
        accepted = upload(s3_stack, helper, factories.noisy_jpeg(20_000))
        assert accepted.status_code == 202, accepted.text
        return reading_of(s3_stack, helper, accepted.json()["id"])["model_version"] == candidate.version

    wait_for(read_by_candidate, timeout=300, interval=0.5, what="a reading by the retrained version")
    assert "switched from model" in s3_stack.ai_worker.log()
