"""Owner-confirmed photos become training samples. No torch here.

`training_sample_record` turns a TaskConfirmedEvent into a TrainingSample: the photo is
copied, by the storage API, to a content-addressed name (a photo stored twice is one
file), next to the confirmed labels and the model version that had read it. Which side a
sample is on (train or held out) is decided once, from the photo's hash, so a held-out
photo never trains a model, not even when it is confirmed again on another task.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Mapping
from datetime import datetime

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Max

from messaging.errors import PermanentError
from ml.labels import check_labels
from ml.models import RetrainingRun, TrainingSample, training_photo_path

logger = logging.getLogger(__name__)


class SampleRejected(PermanentError):
    """The confirmed labels or the photo cannot make a training sample; retrying won't help."""


def holdout_percent() -> int:
    return settings.ML_HOLDOUT_PERCENT


def split_for(photo_sha256: str) -> str:
    """The side a photo is on, for good: held out for `holdout_percent()` % of the hashes."""
    bucket = int(photo_sha256[:8], 16) % 100
    return TrainingSample.Split.HOLDOUT if bucket < holdout_percent() else TrainingSample.Split.TRAIN


def training_sample_record(
    *,
    task_id: int,
    branch_id: int,
    photo: str,
    labels: Mapping[str, str],
    ai_labels: Mapping[str, str],
    model_version: str | None,
    confirmed_by: int | None,
    confirmed_at: datetime | None,
    event_id: uuid.UUID,
    photo_sha256: str | None = None,
) -> tuple[TrainingSample, bool]:
    """Store the training sample of a confirmed task; (sample, False) when it already exists.

    Raises SampleRejected for labels outside the vocabulary and for a photo that has
    disappeared from storage.
    """
    existing = TrainingSample.objects.filter(task_id=task_id).first()
    if existing is not None:
        return existing, False
    try:
        check_labels(labels)
    except ValueError as exc:
        raise SampleRejected(f"task {task_id}: {exc}") from exc
    try:
        with default_storage.open(photo, "rb") as stored:
            data = stored.read()
    except FileNotFoundError as exc:
        raise SampleRejected(f"task {task_id}: the photo {photo} has disappeared from storage") from exc
    sha256 = hashlib.sha256(data).hexdigest()
    if photo_sha256 and photo_sha256 != sha256:
        raise SampleRejected(f"task {task_id}: the photo {photo} changed since it was confirmed (hash mismatch)")
    sample = TrainingSample(
        task_id=task_id,
        branch_id=branch_id,
        photo_sha256=sha256,
        labels=dict(labels),
        ai_labels=dict(ai_labels),
        corrected=dict(labels) != dict(ai_labels),
        source_model_version=model_version or "",
        split=split_for(sha256),
        confirmed_by=confirmed_by,
        confirmed_at=confirmed_at,
        event_id=event_id,
    )
    name = training_photo_path(sample, photo)
    # the same photo, confirmed on another task, is one file: stored only when it is not there yet
    if not default_storage.exists(name):
        stored = default_storage.save(name, ContentFile(data))
        if stored != name:
            # a concurrent delivery of the same photo stored it meanwhile (the storage never
            # overwrites, so this copy got another name): keep one copy, the content-addressed one
            default_storage.delete(stored)
    sample.photo.name = name
    try:
        with transaction.atomic():
            sample.save()
    except IntegrityError:
        # a concurrent delivery for the same task stored it first; the file is shared
        return TrainingSample.objects.get(task_id=task_id), False
    logger.info(
        "training sample of task %s (%s%s)", task_id, sample.split, ", corrected" if sample.corrected else ""
    )
    return sample, True


def samples_used_up_to() -> int:
    """The newest sample id that a finished retraining run (promoted or rejected) trained with."""
    return (
        RetrainingRun.objects.filter(status__in=[RetrainingRun.Status.PROMOTED, RetrainingRun.Status.REJECTED])
        .aggregate(up_to=Max("samples_up_to"))["up_to"]
        or 0
    )


def samples_not_yet_used() -> int:
    """How many samples arrived after the last retraining run that used samples."""
    return TrainingSample.objects.filter(pk__gt=samples_used_up_to()).count()
