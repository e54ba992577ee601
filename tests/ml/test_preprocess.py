"""Photos to tensors."""

import torch
from PIL import Image

from ml.preprocess import to_batch, to_tensor, to_uint8_tensor


def test_a_photo_becomes_a_normalised_square_rgb_tensor():
    photo = Image.new("RGB", (640, 480), (255, 128, 0))

    tensor = to_tensor(photo, 96)

    assert tensor.shape == (3, 96, 96)
    assert tensor.dtype == torch.float32
    # ImageNet normalisation: red 1.0 -> (1 - 0.485) / 0.229
    assert abs(float(tensor[0, 0, 0]) - (1 - 0.485) / 0.229) < 1e-4


def test_grey_and_transparent_photos_are_converted_to_rgb():
    assert to_uint8_tensor(Image.new("L", (50, 70), 200), 32).shape == (3, 32, 32)
    assert to_uint8_tensor(Image.new("RGBA", (50, 70), (1, 2, 3, 0)), 32)[:, 0, 0].tolist() == [1, 2, 3]


def test_a_batch_stacks_the_photos():
    photos = [Image.new("RGB", (20 + i, 30), (i, i, i)) for i in range(3)]

    batch = to_batch(photos, 48)

    assert batch.shape == (3, 3, 48, 48)
    assert torch.allclose(batch[1], to_tensor(photos[1], 48))
    assert to_batch([], 48).shape == (0, 3, 48, 48)
