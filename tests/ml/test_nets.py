"""The multi-head network."""

import pytest
import torch

from ml.labels import LABEL_SPACES
from ml.nets import build_model, state_dict_from_bytes, state_dict_to_bytes


def test_the_network_returns_logits_for_every_head():
    model = build_model(LABEL_SPACES).eval()

    with torch.inference_mode():
        logits = model(torch.zeros(2, 3, 64, 64))

    assert set(logits) == {"garment", "condition"}
    assert logits["garment"].shape == (2, len(LABEL_SPACES["garment"]))
    assert logits["condition"].shape == (2, len(LABEL_SPACES["condition"]))


def test_a_state_dict_survives_serialisation():
    model = build_model({"garment": ("shirt", "sock")})

    restored = state_dict_from_bytes(state_dict_to_bytes(model.state_dict()))

    assert restored.keys() == model.state_dict().keys()
    assert torch.equal(restored["heads.garment.weight"], model.state_dict()["heads.garment.weight"])


def test_an_unknown_architecture_is_refused():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model(LABEL_SPACES, architecture="resnet50")
