"""Reading photos with the active version, and switching versions without a restart."""

import io

import pytest
from django.core.files.storage import default_storage
from PIL import Image

from ml import inference
from ml.errors import ModelUnavailable, NoActiveModel, UndecodablePhoto
from ml.inference import Prediction, Reader, active_reader, decode_photo
from ml.labels import LABEL_SPACES
from ml.services import model_version_activate

pytestmark = pytest.mark.django_db


def photo_bytes(image: Image.Image, image_format: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format)
    return buffer.getvalue()


def test_a_reader_returns_a_known_label_and_a_probability_for_every_head(store_version, tiny_samples):
    reader = Reader(store_version(activate=False))

    prediction = reader.read(tiny_samples[0][0])

    assert isinstance(prediction, Prediction)
    assert prediction.model_version == "v1"
    assert set(prediction.labels) == set(LABEL_SPACES)
    for head, label in prediction.labels.items():
        assert label in LABEL_SPACES[head]
        assert 0.0 <= prediction.confidences[head] <= 1.0
    assert prediction.inference_ms > 0


def test_a_batch_reads_like_single_photos(store_version, tiny_samples):
    reader = Reader(store_version(activate=False))
    photos = [image for image, _ in tiny_samples[:5]]

    batch = reader.read_batch(photos)

    assert [p.labels for p in batch] == [reader.read(photo).labels for photo in photos]
    assert reader.read_batch([]) == []


def test_photos_of_any_size_and_mode_are_read(store_version):
    reader = Reader(store_version(activate=False))

    for photo in (Image.new("RGB", (1200, 900), "white"), Image.new("L", (30, 20)), Image.new("RGBA", (64, 64))):
        assert set(reader.read(photo).labels) == set(LABEL_SPACES)


def test_a_version_reads_with_the_label_spaces_it_was_trained_on(store_version):
    version = store_version(activate=False)
    version.label_spaces = {"garment": ["a", "b", "c", "d", "e"], "condition": ["x", "y", "z"]}
    version.save()

    prediction = Reader(version).read(Image.new("RGB", (32, 32)))

    assert prediction.labels["garment"] in "abcde" and prediction.labels["condition"] in "xyz"


def test_weights_that_are_missing_from_storage_are_reported(store_version):
    version = store_version(activate=False)
    default_storage.delete(version.artifact.name)

    with pytest.raises(ModelUnavailable, match="Model v1 cannot be loaded"):
        Reader(version)


def test_without_an_active_version_there_is_no_reader(store_version):
    store_version(activate=False)

    with pytest.raises(NoActiveModel, match="No model version is active"):
        active_reader()


def test_the_active_reader_is_loaded_once_and_not_asked_again_within_the_interval(
    store_version, settings, django_assert_num_queries
):
    settings.ML_RELOAD_CHECK_SECONDS = 3600
    store_version(activate=True)
    reader = active_reader()

    with django_assert_num_queries(0):
        assert active_reader() is reader
    assert reader.version == "v1"


def test_the_active_reader_switches_to_a_newly_activated_version(store_version, settings, django_assert_num_queries):
    settings.ML_RELOAD_CHECK_SECONDS = 0
    store_version(activate=True)
    store_version(activate=False)
    first = active_reader()

    with django_assert_num_queries(1):  # the check is one cheap query when nothing changed
        assert active_reader() is first
    model_version_activate(version="v2")
    second = active_reader()

    assert (first.version, second.version) == ("v1", "v2")
    assert second.read(Image.new("RGB", (32, 32))).model_version == "v2"


def test_the_active_reader_waits_for_the_interval_before_switching(store_version, settings, monkeypatch):
    settings.ML_RELOAD_CHECK_SECONDS = 2.0
    clock = [1000.0]
    monkeypatch.setattr(inference.time, "monotonic", lambda: clock[0])
    store_version(activate=True)
    store_version(activate=False)
    assert active_reader().version == "v1"

    model_version_activate(version="v2")
    clock[0] += 1.0
    assert active_reader().version == "v1"
    clock[0] += 1.5
    assert active_reader().version == "v2"


def test_a_version_that_cannot_be_loaded_leaves_the_previous_one_reading(store_version, settings):
    settings.ML_RELOAD_CHECK_SECONDS = 0
    store_version(activate=True)
    broken = store_version(activate=False)
    default_storage.delete(broken.artifact.name)
    assert active_reader().version == "v1"

    model_version_activate(version="v2")

    assert active_reader().version == "v1"


def test_deactivating_every_version_stops_reading(store_version, settings):
    settings.ML_RELOAD_CHECK_SECONDS = 0
    version = store_version(activate=True)
    active_reader()
    type(version).objects.update(is_active=False)

    with pytest.raises(NoActiveModel):
        active_reader()


def test_decode_photo_reads_jpeg_png_and_webp_as_upright_rgb():
    image = Image.new("RGB", (40, 20), (10, 200, 30))

    for image_format in ("JPEG", "PNG", "WEBP"):
        decoded = decode_photo(photo_bytes(image, image_format))
        assert (decoded.mode, decoded.size) == ("RGB", (40, 20))

    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    assert decode_photo(buffer.getvalue()).size == (20, 40)


def test_decode_photo_shrinks_a_large_jpeg_while_decoding():
    decoded = decode_photo(photo_bytes(Image.new("RGB", (4000, 3000), "red")))

    assert decoded.size == (1000, 750)  # decoded at 1/4 scale: still at least 512 pixels per side


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"this is not a photo", "not an image"),
        (photo_bytes(Image.new("RGB", (64, 64), "blue"))[:300], "corrupt or truncated"),
    ],
    ids=["empty", "text", "truncated"],
)
def test_decode_photo_refuses_what_is_not_an_image(data, message):
    with pytest.raises(UndecodablePhoto, match=message):
        decode_photo(data)
