"""The label spaces: what the model reads."""

import pytest

from ml.labels import LABEL_SPACES, check_labels, label_spaces_as_json


def test_the_heads_are_garment_and_condition():
    assert LABEL_SPACES["condition"] == ("clean", "stained", "torn")
    assert len(LABEL_SPACES["garment"]) == len(set(LABEL_SPACES["garment"])) == 5
    assert label_spaces_as_json(LABEL_SPACES)["garment"] == list(LABEL_SPACES["garment"])


def test_check_labels_names_an_unknown_label_and_the_known_ones():
    check_labels({"garment": "sock", "condition": "torn"})

    with pytest.raises(ValueError, match="unknown garment 'scarf'; the known ones are: shirt, trousers"):
        check_labels({"garment": "scarf", "condition": "torn"})
    with pytest.raises(ValueError, match="expected labels for"):
        check_labels({"garment": "sock"})
