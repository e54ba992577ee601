"""`manage.py train_model`: trains, stores, activates; refuses bad input without storing anything."""

import io

import pytest
from django.core.management import CommandError, call_command

from ml.models import ModelVersion
from ml.synthetic import write_image_folder

pytestmark = pytest.mark.django_db

TINY = ["--image-size", "32", "--epochs", "1"]


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("train_model", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_it_trains_on_synthetic_pictures_and_activates_the_first_version():
    out = run("--per-class", "2", *TINY)

    version = ModelVersion.objects.get()
    assert version.version == "v1" and version.is_active
    assert version.metrics["data_source"] == "synthetic (per_class=2, seed=0)"
    assert version.metrics["train_size"] == 15 and version.metrics["eval_size"] == 15
    assert "epoch 1/1: loss" in out
    assert "model v1 stored and activated: held-out exact match" in out


def test_it_trains_on_a_folder_and_keeps_the_active_version_unless_told(tmp_path):
    write_image_folder(tmp_path, per_class=2, image_size=32, seed=3)
    run("--per-class", "2", *TINY)

    out = run("--data", str(tmp_path), *TINY)

    assert "model v2 stored, not activated (active: v1)" in out
    assert ModelVersion.objects.get(version="v2").metrics["data_source"] == f"folder {tmp_path}"
    run("--data", str(tmp_path), "--activate", *TINY)
    assert ModelVersion.objects.get(is_active=True).version == "v3"


def test_no_activate_keeps_even_the_first_version_inactive():
    run("--per-class", "2", "--no-activate", *TINY)

    assert not ModelVersion.objects.get().is_active


def test_if_missing_does_nothing_when_a_version_is_active(store_version):
    store_version(activate=True)

    out = run("--if-missing")

    assert out.strip() == "model v1 is active; nothing to train (--if-missing)"
    assert ModelVersion.objects.count() == 1


def test_if_missing_trains_when_the_active_versions_file_is_gone(store_version):
    stale = store_version(activate=True)
    stale.artifact.storage.delete(stale.artifact.name)

    out = run("--if-missing", "--per-class", "2", *TINY)

    assert f"model v1 is active but its file {stale.artifact.name} is missing" in out
    assert ModelVersion.objects.get(is_active=True).version == "v2"


def test_if_missing_trains_when_no_version_is_active():
    run("--if-missing", "--per-class", "2", *TINY)

    assert ModelVersion.objects.get().is_active


@pytest.mark.parametrize(
    ("make_data", "message"),
    [
        (lambda root: root / "missing", "does not exist"),
        (lambda root: root, "No images found in"),
        (lambda root: (root / "jeans" / "clean").mkdir(parents=True) or root, "Unknown garment folder 'jeans'"),
        (lambda root: (root / "sock" / "worn").mkdir(parents=True) or root, "Unknown condition folder 'worn'"),
    ],
    ids=["missing", "empty", "unknown-garment", "unknown-condition"],
)
def test_bad_data_is_one_readable_error_and_nothing_is_stored(tmp_path, make_data, message, stored_artifacts):
    before = stored_artifacts()

    with pytest.raises(CommandError, match=message) as error:
        run("--data", str(make_data(tmp_path)), *TINY)

    assert "\n" not in str(error.value)
    assert ModelVersion.objects.count() == 0
    assert stored_artifacts() == before


def test_too_few_pictures_to_hold_any_out_is_an_error(tmp_path, stored_artifacts):
    write_image_folder(tmp_path, per_class=1, image_size=32, seed=3)
    before = stored_artifacts()

    with pytest.raises(CommandError, match="Too few images to hold out"):
        run("--data", str(tmp_path), *TINY)

    assert ModelVersion.objects.count() == 0
    assert stored_artifacts() == before


@pytest.mark.parametrize(
    "args",
    [["--epochs", "0"], ["--per-class", "1"], ["--image-size", "8"], ["--eval-fraction", "1.5"]],
    ids=["epochs", "per-class", "image-size", "eval-fraction"],
)
def test_bad_numbers_are_refused_before_anything_runs(args):
    with pytest.raises(CommandError, match="must be"):
        run(*args)
    assert ModelVersion.objects.count() == 0


def test_unreadable_images_are_skipped_with_a_warning(tmp_path):
    write_image_folder(tmp_path, per_class=2, image_size=32, seed=3)
    (tmp_path / "towel" / "clean" / "broken.jpg").write_bytes(b"not a jpeg")
    err = io.StringIO()

    call_command("train_model", "--data", str(tmp_path), *TINY, stdout=io.StringIO(), stderr=err)

    assert "skipped 1 unreadable image(s)" in err.getvalue()
    assert ModelVersion.objects.get().metrics["train_size"] == 15


def test_the_help_documents_the_folder_layout():
    from ml.management.commands.train_model import Command

    help_text = Command().create_parser("manage.py", "train_model").format_help()

    assert "DIR/<garment>/<condition>/*.jpg|*.jpeg|*.png|*.webp" in help_text
    assert "shirt, trousers, dress, towel, sock" in help_text
    assert "--if-missing" in help_text
