"""Storing and activating model versions: names in order, at most one active."""

import threading

import pytest
from django.db import IntegrityError, connection, transaction

from ml import services
from ml.models import ModelVersion
from ml.selectors import model_version_active, model_version_active_name, model_version_get
from ml.services import ModelVersionNotFound, model_version_activate

pytestmark = pytest.mark.django_db


def test_versions_are_named_in_order_and_keep_what_they_were_trained_on(store_version, tiny_training):
    first = store_version(activate=False)
    second = store_version(activate=False, notes="retrained")

    assert (first.version, second.version) == ("v1", "v2")
    assert second.notes == "retrained"
    assert first.architecture == "mobilenet_v3_small"
    assert first.image_size == 32
    assert first.label_spaces == {
        "garment": ["shirt", "trousers", "dress", "towel", "sock"],
        "condition": ["clean", "stained", "torn"],
    }
    assert first.metrics["exact_match"] == tiny_training.metrics["exact_match"]
    assert first.artifact.name.startswith("models/v1")
    with first.artifact.open("rb") as artifact:
        assert len(artifact.read()) > 1_000_000  # MobileNetV3-Small has ~1 M parameters


def test_numbering_continues_after_the_highest_version(store_version):
    store_version(activate=False)
    ModelVersion.objects.filter(version="v1").update(version="v9")

    assert store_version(activate=False).version == "v10"


def test_a_new_active_version_deactivates_the_previous_one(store_version):
    first = store_version(activate=True)
    second = store_version(activate=True)

    first.refresh_from_db()
    assert not first.is_active
    assert second.is_active and second.activated_at is not None
    assert model_version_active() == second
    assert model_version_active_name() == "v2"
    assert ModelVersion.objects.filter(is_active=True).count() == 1


def test_activating_by_name_switches_back_and_is_idempotent(store_version):
    store_version(activate=True)
    store_version(activate=True)

    model_version_activate(version="v1")
    again = model_version_activate(version="v1")

    assert again.version == "v1" and again.is_active
    assert list(ModelVersion.objects.filter(is_active=True).values_list("version", flat=True)) == ["v1"]
    assert not model_version_get(version="v2").is_active


def test_an_unknown_version_cannot_be_activated(store_version):
    store_version(activate=True)

    with pytest.raises(ModelVersionNotFound, match="no model version 'v7'"):
        model_version_activate(version="v7")
    assert model_version_active_name() == "v1"


def test_the_database_refuses_a_second_active_version(store_version):
    store_version(activate=True)
    second = store_version(activate=False)

    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=second.pk).update(is_active=True)


def test_no_active_version_at_first():
    assert model_version_active() is None
    assert model_version_active_name() is None


def test_a_failure_while_storing_leaves_no_row_and_no_file(store_version, stored_artifacts, monkeypatch):
    before = stored_artifacts()

    def broken_activate(*, version, **_):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(services, "model_version_activate", broken_activate)
    with pytest.raises(RuntimeError, match="went away"):
        store_version(activate=True)

    assert ModelVersion.objects.count() == 0
    assert stored_artifacts() == before


@pytest.mark.django_db(transaction=True)
def test_concurrent_activations_never_leave_two_versions_active(store_version):
    versions = [store_version(activate=False).version for _ in range(3)]
    model_version_activate(version=versions[0])
    errors = []

    def activate_repeatedly(name):
        try:
            for _ in range(15):
                model_version_activate(version=name)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=activate_repeatedly, args=(name,)) for name in versions[1:]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert ModelVersion.objects.filter(is_active=True).count() == 1
