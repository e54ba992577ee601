"""The event contracts of the laundry-branch network: the one place they are defined.

Producers import a contract, build it and pass it to `messaging.outbox.publish_event`;
consumers register a handler for it with `messaging.consumers.event_consumer`. Neither
side imports the other. A change to a payload is a new class with the next
`schema_version`, never an edit of a published one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from messaging.events import Event

Labels = dict[str, str]

# The label vocabulary that owners confirm readings with: part of the contract between the
# producer (`tasks`, which validates an owner's correction) and the consumer (`ml`, whose
# model heads read these labels). Adding a label is a payload change: a new schema_version.
# Garments whose silhouettes differ clearly when lying flat: a T (shirt), two legs
# (trousers), an A-line without sleeves (dress), a plain rectangle (towel), an L (sock).
GARMENTS: tuple[str, ...] = ("shirt", "trousers", "dress", "towel", "sock")
CONDITIONS: tuple[str, ...] = ("clean", "stained", "torn")
LABEL_VOCABULARY: dict[str, tuple[str, ...]] = {"garment": GARMENTS, "condition": CONDITIONS}


class LaundryLabels(BaseModel):
    """One label per label space (garment, condition), from the label vocabulary."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    garment: Literal[GARMENTS]  # type: ignore[valid-type]
    condition: Literal[CONDITIONS]  # type: ignore[valid-type]


class TaskSubmittedEvent(Event):
    """A helper registered a laundry task with a photo; the AI should read it."""

    event_type = "TaskSubmittedEvent"
    schema_version = 1
    producer = "tasks"

    task_id: int = Field(ge=1)
    branch_id: int = Field(ge=1)
    helper_id: int = Field(ge=1)
    photo: str = Field(min_length=1, description="Storage name of the photo (Django storage API).")


class TaskAnalyzedEvent(Event):
    """The AI has read a task's photo and stored the reading (the owner confirms it next).

    Subscribers: the audit trail and the push to the helper ("your photo of task 12 was read:
    shirt, stained"), which the mobile app would otherwise poll for.
    """

    event_type = "TaskAnalyzedEvent"
    schema_version = 1
    producer = "ml"

    task_id: int = Field(ge=1)
    branch_id: int = Field(ge=1)
    helper_id: int = Field(ge=1)
    labels: Labels = Field(description='What the AI read, one label per label space, e.g. {"garment": "shirt"}.')
    confidences: dict[str, float] = Field(description="The model's confidence in each label, 0..1.")
    model_version: str = Field(min_length=1, description='The model version that read the photo, e.g. "v3".')


class TaskConfirmedEventV1(Event):
    """Version 1 of TaskConfirmedEvent; still accepted while such messages may be in flight."""

    event_type = "TaskConfirmedEvent"
    schema_version = 1
    producer = "tasks"

    task_id: int = Field(ge=1)
    branch_id: int = Field(ge=1)
    photo: str = Field(min_length=1)
    ai_labels: Labels
    confirmed_labels: Labels
    model_version: str | None
    confirmed_by: int = Field(ge=1)


class TaskConfirmedEvent(Event):
    """A branch owner confirmed or corrected the AI reading of a task: training data.

    Version 2 (over version 1): the confirmed labels are checked against the vocabulary,
    and the photo's SHA-256 and the time of the confirmation travel with it, so the
    training data can skip a photo it already has and order samples by confirmation.
    """

    event_type = "TaskConfirmedEvent"
    schema_version = 2
    producer = "tasks"

    task_id: int = Field(ge=1)
    branch_id: int = Field(ge=1)
    photo: str = Field(min_length=1, description="Storage name of the photo (Django storage API).")
    photo_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    ai_labels: Labels = Field(description="What the AI read (its model's label spaces).")
    confirmed_labels: LaundryLabels = Field(description="What the owner confirmed: the truth to train on.")
    model_version: str | None = Field(description='The model version that read the photo, e.g. "v3".')
    confirmed_by: int = Field(ge=1, description="The user id of the owner who confirmed.")
    confirmed_at: AwareDatetime


class EquipmentFaultEvent(Event):
    """A washer or dryer tripped a fault rule; the branch owner must know within seconds."""

    event_type = "EquipmentFaultEvent"
    schema_version = 1
    producer = "monitoring"

    fault_id: int = Field(ge=1)
    equipment_id: int = Field(ge=1)
    branch_id: int = Field(ge=1)
    code: str = Field(min_length=1)
    severity: Literal["info", "warning", "critical"]
    message: str
    detected_at: datetime


class BranchPreferenceCreatedEvent(Event):
    """A branch owner published a branch profile or offer; matching customers hear of it."""

    event_type = "BranchPreferenceCreatedEvent"
    schema_version = 1
    producer = "branches"

    branch_id: int = Field(ge=1)
    offer_id: int = Field(ge=1)
