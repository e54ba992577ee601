"""Training data: labelled photos from a folder, and the held-out split.

A sample is `(image, labels)`: an RGB PIL image and one label per label space, e.g.
`{"garment": "shirt", "condition": "stained"}`. `ml.synthetic.generate` produces samples,
and so does `load_image_folder` from photos on disk, laid out like torchvision's
ImageFolder with one folder level per label space:

    DIR/<garment>/<condition>/*.jpg|*.jpeg|*.png|*.webp

e.g. `DIR/shirt/stained/0001.jpg`. Folder names must be labels of LABEL_SPACES; hidden
files and files with other extensions are ignored, images outside a condition folder are
refused (they have no label). Photos are shrunk on loading (`max_side`) so that a folder of
phone photos fits in memory.

No torch here, so the folder can be checked before torch is even imported.
"""

from __future__ import annotations

import random
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps

from ml import defaults
from ml.errors import DatasetError
from ml.labels import LABEL_SPACES

Sample = tuple[Image.Image, dict[str, str]]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
FOLDER_LAYOUT = "DIR/<garment>/<condition>/*.jpg|*.jpeg|*.png|*.webp"
# The held-out split depends on this seed, not on the training seed, so that models trained
# with different seeds on the same data are evaluated on the same photos.
SPLIT_SEED = 0


@dataclass
class FolderData:
    """What load_image_folder read: the samples, and the image files it had to skip."""

    samples: list[Sample]
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (path, why)

    def counts(self) -> dict[tuple[str, str], int]:
        """Images per (garment, condition)."""
        counts: dict[tuple[str, str], int] = defaultdict(int)
        for _, labels in self.samples:
            counts[(labels["garment"], labels["condition"])] += 1
        return dict(counts)


def load_image_folder(directory: str | Path, *, max_side: int | None = 256) -> FolderData:
    """Read every photo of DIR/<garment>/<condition>/ with its labels (see the module docstring).

    Raises DatasetError, with a message naming the problem, for a missing directory, a
    folder name that is not a known garment or condition, an image outside a condition
    folder, a directory without images, and one where no image can be read. Images that
    cannot be read are skipped and listed in `skipped`.
    """
    root = Path(directory)
    if not root.exists():
        raise DatasetError(f"The data directory {root} does not exist.")
    if not root.is_dir():
        raise DatasetError(f"The data directory {root} is not a directory.")
    garments, conditions = LABEL_SPACES["garment"], LABEL_SPACES["condition"]
    paths: list[tuple[Path, dict[str, str]]] = []
    for garment_dir in _entries(root):
        if not garment_dir.is_dir():
            _refuse_stray_image(garment_dir, root)
            continue
        if garment_dir.name not in garments:
            raise DatasetError(
                f"Unknown garment folder {garment_dir.name!r} in {root}; the known garments are: "
                f"{', '.join(garments)} (layout {FOLDER_LAYOUT})."
            )
        for condition_dir in _entries(garment_dir):
            if not condition_dir.is_dir():
                _refuse_stray_image(condition_dir, root)
                continue
            if condition_dir.name not in conditions:
                raise DatasetError(
                    f"Unknown condition folder {condition_dir.name!r} in {garment_dir}; the known conditions "
                    f"are: {', '.join(conditions)} (layout {FOLDER_LAYOUT})."
                )
            labels = {"garment": garment_dir.name, "condition": condition_dir.name}
            paths.extend((path, labels) for path in _entries(condition_dir) if _is_image_file(path))
    if not paths:
        raise DatasetError(f"No images found in {root}; expected the layout {FOLDER_LAYOUT}.")
    data = FolderData(samples=[])
    for path, labels in paths:
        try:
            data.samples.append((_read_image(path, max_side), dict(labels)))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            data.skipped.append((path, str(exc) or type(exc).__name__))
    if not data.samples:
        path, why = data.skipped[0]
        raise DatasetError(
            f"None of the {len(paths)} image files in {root} could be read (e.g. {path}: {why})."
        )
    return data


def holdout_split(
    samples: Sequence[Sample], *, eval_fraction: float = defaults.EVAL_FRACTION, seed: int = SPLIT_SEED
) -> tuple[list[Sample], list[Sample]]:
    """Split samples into (train, held-out), stratified by label combination, reproducibly.

    Every combination with at least two samples puts round(n * eval_fraction), but at least
    one, into the held-out set and keeps at least one for training; a combination with a
    single sample only trains. The same samples in the same order always split the same way.
    """
    if not 0 < eval_fraction < 1:
        raise ValueError("eval_fraction must be between 0 and 1")
    by_labels: dict[tuple[tuple[str, str], ...], list[int]] = defaultdict(list)
    for index, (_, labels) in enumerate(samples):
        by_labels[tuple(sorted(labels.items()))].append(index)
    rng = random.Random(seed)
    held_out: set[int] = set()
    for key in sorted(by_labels):
        indices = by_labels[key]
        if len(indices) < 2:
            continue
        count = min(len(indices) - 1, max(1, round(len(indices) * eval_fraction)))
        held_out.update(rng.sample(indices, count))
    train = [sample for index, sample in enumerate(samples) if index not in held_out]
    evaluation = [sample for index, sample in enumerate(samples) if index in held_out]
    return train, evaluation


def _entries(directory: Path) -> list[Path]:
    return sorted(path for path in directory.iterdir() if not path.name.startswith("."))


def _is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def _refuse_stray_image(path: Path, root: Path) -> None:
    if _is_image_file(path):
        raise DatasetError(
            f"The image {path} is not in a <garment>/<condition> folder, so it has no labels; "
            f"the layout is {FOLDER_LAYOUT} under {root}."
        )


def _read_image(path: Path, max_side: int | None) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            if max_side and image.format == "JPEG":
                image.draft("RGB", (max_side, max_side))  # decode a large JPEG at reduced scale
            image = ImageOps.exif_transpose(image)
            image = image.convert("RGB")  # decodes the whole file: a truncated one fails here
    if max_side and max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return image
