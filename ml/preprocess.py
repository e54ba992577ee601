"""Photos to tensors: the one transformation shared by training and inference.

A photo is converted to RGB and squashed to a square `image_size` x `image_size` (the
whole photo is kept, so a garment near the edge is not cropped away; synthetic pictures
are square already), then scaled to [0, 1] and normalised with the ImageNet mean and
standard deviation, as torchvision's MobileNet expects.

Training keeps its pictures as uint8 tensors (a quarter of the memory) and normalises a
batch at a time with `normalize`; `to_tensor` does both steps for one photo.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from ml import defaults

DEFAULT_IMAGE_SIZE = defaults.IMAGE_SIZE
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def squash(image: Image.Image, image_size: int) -> Image.Image:
    """The photo in RGB, squashed to image_size x image_size (itself when it already is)."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != (image_size, image_size):
        # reducing_gap: a large photo is first shrunk by an integer factor (fast), then resampled
        image = image.resize((image_size, image_size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return image


def to_uint8_tensor(image: Image.Image, image_size: int) -> torch.Tensor:
    """The photo as a 3 x image_size x image_size uint8 tensor (RGB, squashed to a square)."""
    array = np.asarray(squash(image, image_size), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def normalize(batch: torch.Tensor) -> torch.Tensor:
    """A uint8 batch (N x 3 x H x W) as the float input the network expects."""
    return (batch.float().div_(255.0) - MEAN) / STD


def to_tensor(image: Image.Image, image_size: int) -> torch.Tensor:
    """One photo as the normalised 3 x image_size x image_size float tensor."""
    return normalize(to_uint8_tensor(image, image_size).unsqueeze(0))[0]


def to_batch(images: Sequence[Image.Image], image_size: int) -> torch.Tensor:
    """Photos as one normalised N x 3 x image_size x image_size float tensor."""
    if not images:
        return torch.empty(0, 3, image_size, image_size)
    return normalize(to_uint8_batch(images, image_size))


def to_uint8_batch(images: Sequence[Image.Image], image_size: int) -> torch.Tensor:
    """Photos as one N x 3 x image_size x image_size uint8 tensor."""
    if not images:
        return torch.empty(0, 3, image_size, image_size, dtype=torch.uint8)
    return torch.stack([to_uint8_tensor(image, image_size) for image in images])
