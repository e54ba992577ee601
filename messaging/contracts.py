"""The event contracts of the laundry-branch network: the one place they are defined.

Producers import a contract, build it and pass it to `messaging.outbox.publish_event`;
consumers register a handler for it with `messaging.consumers.event_consumer`. Neither
side imports the other. A change to a payload is a new class with the next
`schema_version`, never an edit of a published one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from messaging.events import Event

Labels = dict[str, str]


class TaskSubmittedEvent(Event):
    """A helper registered a laundry task with a photo; the AI should read it."""

    event_type = "TaskSubmittedEvent"
    schema_version = 1
    producer = "tasks"

    task_id: int = Field(ge=1)
    branch_id: int = Field(ge=1)
    helper_id: int = Field(ge=1)
    photo: str = Field(min_length=1, description="Storage name of the photo (Django storage API).")


class TaskConfirmedEvent(Event):
    """A branch owner confirmed or corrected the AI reading of a task: training data."""

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
