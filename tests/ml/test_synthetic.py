"""The synthetic laundry pictures: deterministic per seed, every kind covered."""

from collections import Counter

from PIL import Image

from ml.labels import LABEL_SPACES
from ml.synthetic import generate, write_image_folder

KINDS = {(garment, condition) for garment in LABEL_SPACES["garment"] for condition in LABEL_SPACES["condition"]}


def pixels(samples) -> list[bytes]:
    return [image.tobytes() for image, _ in samples]


def test_every_garment_and_condition_gets_per_class_pictures_of_the_requested_size():
    samples = generate(per_class=3, image_size=40, seed=1)

    assert Counter((labels["garment"], labels["condition"]) for _, labels in samples) == {kind: 3 for kind in KINDS}
    assert {(image.mode, image.size) for image, _ in samples} == {("RGB", (40, 40))}


def test_the_same_seed_draws_the_same_pictures_and_another_seed_other_ones():
    first = generate(per_class=2, image_size=32, seed=5)
    again = generate(per_class=2, image_size=32, seed=5)
    other = generate(per_class=2, image_size=32, seed=6)

    assert pixels(first) == pixels(again)
    assert [labels for _, labels in first] == [labels for _, labels in again]
    assert all(a != b for a, b in zip(pixels(first), pixels(other), strict=True))


def test_more_pictures_per_class_extend_the_set_instead_of_reshuffling_it():
    small = generate(per_class=1, image_size=32, seed=3)
    large = generate(per_class=2, image_size=32, seed=3)

    assert pixels(small) == pixels(large)[::2]


def test_parallel_drawing_gives_the_same_pictures():
    assert pixels(generate(per_class=1, image_size=32, seed=4, workers=2)) == pixels(
        generate(per_class=1, image_size=32, seed=4)
    )


def test_the_pictures_of_one_kind_differ_from_each_other():
    samples = generate(per_class=4, image_size=32, seed=2)

    assert len(set(pixels(samples))) == len(samples)


def test_write_image_folder_writes_the_imagefolder_layout(tmp_path):
    paths = write_image_folder(tmp_path, per_class=2, image_size=32, seed=1, image_format="jpg")

    assert len(paths) == 2 * len(KINDS)
    assert {(p.parent.parent.name, p.parent.name) for p in paths} == KINDS
    assert sorted(p.name for p in (tmp_path / "sock" / "torn").iterdir()) == ["0000.jpg", "0001.jpg"]
    with Image.open(paths[0]) as image:
        assert (image.format, image.size) == ("JPEG", (32, 32))
