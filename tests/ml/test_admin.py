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


def test_rollback_asks_first_then_activates_the_previous_version(admin_client, store_version):
    store_version(activate=True)
    store_version(activate=True)  # v2 replaced v1

    question = admin_client.get("/admin/ml/modelversion/rollback/").content.decode()
    assert "Roll back from <strong>v2</strong> to" in question and "<strong>v1</strong>" in question
    assert ModelVersion.objects.get(is_active=True).version == "v2"  # asking changes nothing

    answer = admin_client.post("/admin/ml/modelversion/rollback/", follow=True)

    assert ModelVersion.objects.get(is_active=True).version == "v1"
    assert "Rolled back: v1 is the active model version again." in answer.content.decode()
    history = admin_client.get("/admin/ml/modelactivation/").content.decode()
    assert "rolled back in the admin" in history and "admin root" in history


def test_rollback_without_an_earlier_version_says_so_and_changes_nothing(admin_client, store_version):
    store_version(activate=True)

    assert "nothing to roll back to" in admin_client.get("/admin/ml/modelversion/rollback/").content.decode()
    answer = admin_client.post("/admin/ml/modelversion/rollback/", follow=True)

    assert "nothing to roll back to" in answer.content.decode()
    assert ModelVersion.objects.get(is_active=True).version == "v1"


def test_model_views_are_for_superusers_only_even_with_permissions(client, store_version):
    from django.contrib.auth.models import Permission

    store_version(activate=True)
    store_version(activate=False)
    staff = get_user_model().objects.create_user("staff", password="pw", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="ml"))
    client.force_login(staff)

    for url in ("/admin/ml/modelversion/", "/admin/ml/modelversion/rollback/", "/admin/ml/modelactivation/",
                "/admin/ml/trainingsample/", "/admin/ml/retrainingrun/"):
        assert client.get(url).status_code == 403, url
    assert client.post("/admin/ml/modelversion/rollback/").status_code == 403
    second = ModelVersion.objects.get(version="v2")
    response = client.post("/admin/ml/modelversion/", {"action": "activate", "_selected_action": [second.pk]})
    assert response.status_code == 403
    assert ModelVersion.objects.get(is_active=True).version == "v1"
