"""What the model reads from a laundry photo: one label per label space.

Each label space is one head of the network. The order of the labels is the order of the
head's outputs, so it is part of a trained model: a ModelVersion stores the label spaces
it was trained on, and inference always uses the stored ones, never this module's.
Adding a label here therefore only affects models trained afterwards.

No torch here: the web process imports this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

LabelSpaces = Mapping[str, Sequence[str]]

# Garments whose silhouettes differ clearly when lying flat: a T (shirt), two legs
# (trousers), an A-line without sleeves (dress), a plain rectangle (towel), an L (sock).
GARMENTS: tuple[str, ...] = ("shirt", "trousers", "dress", "towel", "sock")
CONDITIONS: tuple[str, ...] = ("clean", "stained", "torn")

LABEL_SPACES: dict[str, tuple[str, ...]] = {
    "garment": GARMENTS,
    "condition": CONDITIONS,
}


def label_spaces_as_json(label_spaces: LabelSpaces) -> dict[str, list[str]]:
    """The label spaces as stored in ModelVersion.label_spaces (lists, in head order)."""
    return {head: list(labels) for head, labels in label_spaces.items()}


def check_labels(labels: Mapping[str, str], label_spaces: LabelSpaces = LABEL_SPACES) -> None:
    """Raise ValueError unless `labels` names one known label for every label space."""
    if set(labels) != set(label_spaces):
        raise ValueError(f"expected labels for {sorted(label_spaces)}, got {sorted(labels)}")
    for head, label in labels.items():
        if label not in label_spaces[head]:
            known = ", ".join(label_spaces[head])
            raise ValueError(f"unknown {head} {label!r}; the known ones are: {known}")
