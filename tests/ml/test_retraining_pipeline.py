"""The whole loop with real workers: confirmations queue a retraining on `mlops`, the
worker-mlops pool promotes the candidate, and a running AI worker reads with it at once."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from ml.models import ModelVersion, RetrainingRun, TrainingSample
from tests import factories
from tests.ml.conftest import RETRAIN_THRESHOLD
from tests.ml.test_retraining import shifted, store_samples, what_the_model_reads
from tests.support import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("relay")]


@pytest.fixture(scope="module")
def pictures():
    from ml.synthetic import generate

    return [image for image, _ in generate(per_class=3, image_size=32, seed=5)]


def test_enough_confirmations_retrain_and_promote_on_the_mlops_worker(mlops_worker, store_version, pictures):
    active = store_version(activate=True)
    read = what_the_model_reads(active, pictures)
    corrected = [shifted(labels) for labels in read]
    count = RETRAIN_THRESHOLD - 1
    store_samples(pictures[:29], corrected[:29], split="train")
    store_samples(pictures[29:count], corrected[29:count], split="holdout")
    owner = factories.user(staff=True)
    photo = factories.photo_bytes(size=(64, 64))
    from ml.inference import decode_photo

    (reading,) = what_the_model_reads(active, [decode_photo(photo)])
    task = factories.analyzed_task(at=factories.branch(owner=owner), labels=reading, model_version=active.version,
                                   photo=photo)

    response = factories.api_client_for(owner).post(
        f"/api/v1/tasks/{task.pk}/confirm/", {"labels": shifted(reading)}, format="json"
    )
    assert response.status_code == 200

    run = wait_for(
        lambda: RetrainingRun.objects.filter(status__in=RetrainingRun.FINISHED).first(),
        timeout=180, what=f"the retraining run on the mlops worker ({mlops_worker.log_path})",
    )
    assert TrainingSample.objects.count() == RETRAIN_THRESHOLD
    assert run.trigger == "samples"
    assert run.status == "promoted", run.reason
    assert ModelVersion.objects.get(is_active=True) == run.candidate
    assert run.candidate.parent == active


def test_after_a_promotion_the_running_ai_worker_reads_with_the_new_version(probe_worker, store_version):
    first = store_version(activate=True)
    second = store_version(activate=False)
    helper = factories.helper()
    client = factories.api_client_for(helper)

    def read_one() -> str:
        photo = SimpleUploadedFile("laundry.jpg", factories.noisy_jpeg(20_000), content_type="image/jpeg")
        url = client.post("/api/v1/tasks/", {"photo": photo}, format="multipart").json()["url"]
        body = wait_for(lambda: (b := client.get(url).json())["status"] == "analyzed" and b, timeout=60,
                        what="a reading")
        return body["reading"]["model_version"]

    assert read_one() == first.version
    call_command("models", "promote", second.version, stdout=open("/dev/null", "w"))

    # within ML_RELOAD_CHECK_SECONDS every worker process reads with it, without a restart
    wait_for(lambda: read_one() == second.version, timeout=30, interval=0.5, what="a reading by the new version")
    assert "switched from model" in probe_worker.log()
