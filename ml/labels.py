"""What the model reads from a laundry photo: one label per label space.

Each label space is one head of the network. The order of the labels is the order of the
head's outputs, so it is part of a trained model: a ModelVersion stores the label spaces
it was trained on, and inference always uses the stored ones, never this module's.
Adding a label therefore only affects models trained afterwards.

The vocabulary itself is part of the event contracts (`messaging.contracts.GARMENTS`,
`CONDITIONS`): owners confirm readings with it on the producer side, and a new label is a
new schema version of TaskConfirmedEvent.

No torch here: the web process imports this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from messaging.contracts import CONDITIONS, GARMENTS

LabelSpaces = Mapping[str, Sequence[str]]

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
