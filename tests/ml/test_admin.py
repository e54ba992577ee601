"""The admin lists versions with their key metrics and can activate one."""

import pytest
from django.contrib.auth import get_user_model

from ml.models import ModelVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return client


def test_the_list_shows_versions_with_their_accuracy(admin_client, store_version):
    version = store_version(activate=True)

    page = admin_client.get("/admin/ml/modelversion/").content.decode()

    assert "v1" in page
    assert f"{version.exact_match:.1%}" in page


def test_the_activate_action_switches_the_active_version(admin_client, store_version):
    first = store_version(activate=True)
    store_version(activate=False)

    admin_client.post(
        "/admin/ml/modelversion/",
        {"action": "activate", "_selected_action": [ModelVersion.objects.get(version="v2").pk]},
    )

    first.refresh_from_db()
    assert not first.is_active
    assert ModelVersion.objects.get(is_active=True).version == "v2"


def test_versions_cannot_be_added_or_deleted_by_hand(admin_client, store_version):
    version = store_version(activate=True)

    assert admin_client.get("/admin/ml/modelversion/add/").status_code == 403
    assert admin_client.get(f"/admin/ml/modelversion/{version.pk}/delete/").status_code == 403
    assert admin_client.get(f"/admin/ml/modelversion/{version.pk}/change/").status_code == 200  # read-only view


def test_training_samples_and_retraining_runs_are_listed(admin_client, store_version):
    import uuid

    from ml.models import RetrainingRun, TrainingSample

    TrainingSample.objects.create(
        task_id=31, branch_id=1, photo="training/ab/x.jpg", photo_sha256="ab" * 32,
        labels={"garment": "towel", "condition": "clean"}, ai_labels={"garment": "shirt", "condition": "clean"},
        corrected=True, source_model_version="v1", split="train", event_id=uuid.uuid4(),
    )
    RetrainingRun.objects.create(trigger="command", status="skipped", reason="no new samples since the last run")

    samples = admin_client.get("/admin/ml/trainingsample/")
    runs = admin_client.get("/admin/ml/retrainingrun/")

    assert samples.status_code == runs.status_code == 200
    assert "towel" in samples.content.decode()
    assert "no new samples since the last run" in runs.content.decode()
