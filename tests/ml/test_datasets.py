"""Reading DIR/<garment>/<condition>/*.jpg|png|webp, and the held-out split."""

from collections import Counter

import pytest

from ml.datasets import holdout_split, load_image_folder
from ml.errors import DatasetError
from ml.synthetic import generate, write_image_folder
from tests.ml.test_synthetic import KINDS


@pytest.fixture
def folder(tmp_path):
    write_image_folder(tmp_path / "photos", per_class=2, image_size=32, seed=1)
    return tmp_path / "photos"


def test_it_reads_every_image_with_the_labels_of_its_folders(folder):
    data = load_image_folder(folder)

    assert len(data.samples) == 30
    assert data.skipped == []
    assert data.counts() == {(garment, condition): 2 for garment, condition in KINDS}
    image, labels = data.samples[0]  # folders are read in name order
    assert (image.mode, image.size) == ("RGB", (32, 32))
    assert labels == {"garment": "dress", "condition": "clean"}


def test_jpeg_and_webp_are_read_too_and_other_files_are_ignored(folder):
    generate(per_class=1, image_size=32, seed=2)[0][0].save(folder / "towel" / "torn" / "extra.WEBP", "WEBP")
    generate(per_class=1, image_size=32, seed=2)[0][0].save(folder / "towel" / "torn" / "extra2.jpeg", "JPEG")
    (folder / "towel" / "torn" / "notes.txt").write_text("not a photo")
    (folder / ".DS_Store").write_bytes(b"\0")
    (folder / "README.md").write_text("the photos of branch 1")

    data = load_image_folder(folder)

    assert data.counts()[("towel", "torn")] == 4
    assert len(data.samples) == 32


def test_large_photos_are_shrunk_on_loading(tmp_path):
    (tmp_path / "sock" / "clean").mkdir(parents=True)
    generate(per_class=1, image_size=300, seed=1)[0][0].save(tmp_path / "sock" / "clean" / "big.png")

    (image, _), = load_image_folder(tmp_path, max_side=64).samples

    assert max(image.size) == 64


def test_a_missing_directory_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_image_folder(tmp_path / "nowhere")


def test_a_file_instead_of_a_directory_is_refused(tmp_path):
    (tmp_path / "photos.zip").write_bytes(b"PK")

    with pytest.raises(DatasetError, match="is not a directory"):
        load_image_folder(tmp_path / "photos.zip")


def test_a_directory_without_images_is_refused(tmp_path):
    (tmp_path / "shirt" / "clean").mkdir(parents=True)
    (tmp_path / "shirt" / "clean" / "notes.txt").write_text("nothing here")

    with pytest.raises(DatasetError, match=r"No images found in .*DIR/<garment>/<condition>/"):
        load_image_folder(tmp_path)


def test_an_unknown_garment_folder_is_named_with_the_known_ones(folder):
    (folder / "jeans" / "clean").mkdir(parents=True)

    with pytest.raises(DatasetError) as error:
        load_image_folder(folder)

    assert "Unknown garment folder 'jeans'" in str(error.value)
    assert "the known garments are: shirt, trousers, dress, towel, sock" in str(error.value)


def test_an_unknown_condition_folder_is_named_with_the_known_ones(folder):
    (folder / "shirt" / "faded").mkdir()

    with pytest.raises(DatasetError) as error:
        load_image_folder(folder)

    assert "Unknown condition folder 'faded'" in str(error.value)
    assert "the known conditions are: clean, stained, torn" in str(error.value)


def test_an_image_outside_a_condition_folder_is_refused(folder):
    generate(per_class=1, image_size=32, seed=2)[0][0].save(folder / "shirt" / "loose.png")

    with pytest.raises(DatasetError, match=r"loose.png is not in a <garment>/<condition> folder"):
        load_image_folder(folder)


def test_unreadable_images_are_skipped_and_counted(folder):
    (folder / "dress" / "torn" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    good = (folder / "dress" / "torn" / "0000.png").read_bytes()
    (folder / "dress" / "torn" / "truncated.png").write_bytes(good[: len(good) // 2])

    data = load_image_folder(folder)

    assert len(data.samples) == 30
    assert sorted(path.name for path, _ in data.skipped) == ["broken.jpg", "truncated.png"]


def test_a_directory_of_only_unreadable_images_is_refused(tmp_path):
    (tmp_path / "sock" / "clean").mkdir(parents=True)
    (tmp_path / "sock" / "clean" / "a.jpg").write_bytes(b"garbage")
    (tmp_path / "sock" / "clean" / "b.png").write_bytes(b"")

    with pytest.raises(DatasetError, match=r"None of the 2 image files in .* could be read"):
        load_image_folder(tmp_path)


def test_the_holdout_split_is_stratified_disjoint_and_reproducible():
    samples = generate(per_class=5, image_size=16, seed=1)

    train, held_out = holdout_split(samples, eval_fraction=0.2)
    again_train, again_held_out = holdout_split(samples, eval_fraction=0.2)

    assert len(train) + len(held_out) == len(samples)
    assert {id(image) for image, _ in train}.isdisjoint(id(image) for image, _ in held_out)
    assert set(Counter((s["garment"], s["condition"]) for _, s in held_out).values()) == {1}
    assert [id(image) for image, _ in held_out] == [id(image) for image, _ in again_held_out]
    assert [id(image) for image, _ in train] == [id(image) for image, _ in again_train]


def test_a_kind_with_a_single_sample_only_trains():
    samples = generate(per_class=1, image_size=16, seed=1)

    train, held_out = holdout_split(samples)

    assert (len(train), len(held_out)) == (15, 0)
