"""Storing and activating model versions: every write to ModelVersion goes through here.

The weights arrive as bytes (see ml.nets.state_dict_to_bytes), so this module, like
everything the web process imports, never imports torch.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import IntegerField, Max
from django.db.models.functions import Cast, Substr
from django.utils import timezone

from ml.labels import label_spaces_as_json
from ml.models import ModelActivation, ModelVersion

logger = logging.getLogger(__name__)

_VERSION_NAME = re.compile(r"^v[0-9]+$")
_NAMING_ATTEMPTS = 5


class ModelVersionNotFound(LookupError):
    """No model version has this name."""


class NothingToRollBack(LookupError):
    """No earlier version was ever active."""


def model_version_create(
    *,
    artifact: bytes,
    architecture: str,
    image_size: int,
    label_spaces: Mapping[str, Sequence[str]],
    metrics: Mapping[str, Any],
    activate: bool,
    notes: str = "",
    parent: ModelVersion | None = None,
    outcome: str = ModelVersion.Outcome.TRAINED,
    outcome_reason: str = "",
    activated_by: str = "train_model",
) -> ModelVersion:
    """Store trained weights as the next version ("v1", "v2", ...), optionally activating it.

    `parent` is the version it was fine-tuned from; `outcome` and `outcome_reason` record
    what the retraining pipeline decided. `artifact` is the serialised state dict. The file
    is written first and the row is created (and activated) in one transaction; if that
    fails, the file is deleted, so a failure leaves neither a row nor a file behind.
    """
    if not artifact:
        raise ValueError("the artifact is empty")
    for attempt in range(_NAMING_ATTEMPTS):
        version = ModelVersion(
            version=f"v{_next_version_number()}",
            architecture=architecture,
            image_size=image_size,
            label_spaces=label_spaces_as_json(label_spaces),
            metrics=dict(metrics),
            notes=notes,
            parent=parent,
            outcome=outcome,
            outcome_reason=outcome_reason,
        )
        version.artifact.save(f"{version.version}.pt", ContentFile(artifact), save=False)
        try:
            with transaction.atomic():
                version.save()
                if activate:
                    version = model_version_activate(version=version, by=activated_by, reason=outcome_reason)
        except IntegrityError:
            _delete_artifact(version.artifact.name)
            # another training stored the same version name first: take the next one
            if attempt + 1 < _NAMING_ATTEMPTS and ModelVersion.objects.filter(version=version.version).exists():
                continue
            raise
        except BaseException:
            _delete_artifact(version.artifact.name)
            raise
        logger.info("stored model %s%s", version.version, " (active)" if activate else "")
        return version
    raise AssertionError("unreachable")


def model_version_activate(*, version: ModelVersion | str, by: str = "", reason: str = "") -> ModelVersion:
    """Make `version` the one active version, deactivating the previous one in the same transaction.

    Concurrent activations are serialised by row locks on the target and on the active
    version, so the partial unique constraint (at most one active row) always holds. Each
    activation is recorded (ModelActivation: who, why, which version it replaced); the AI
    workers switch to the new version within ML_RELOAD_CHECK_SECONDS.
    Raises ModelVersionNotFound for an unknown version name.
    """
    name = version.version if isinstance(version, ModelVersion) else version
    with transaction.atomic():
        try:
            target = ModelVersion.objects.select_for_update().get(version=name)
        except ModelVersion.DoesNotExist:
            raise ModelVersionNotFound(f"There is no model version {name!r}.") from None
        # wait for any activation in progress, then see what is active now
        previous = ModelVersion.objects.select_for_update().filter(is_active=True).exclude(pk=target.pk).first()
        if target.is_active:
            return target
        ModelVersion.objects.filter(is_active=True).exclude(pk=target.pk).update(is_active=False)
        target.is_active = True
        target.activated_at = timezone.now()
        target.save(update_fields=["is_active", "activated_at"])
        ModelActivation.objects.create(version=target, previous=previous, activated_by=by[:200], reason=reason)
    logger.info(
        "model %s is now the active version (was %s; by %s)",
        target.version, previous.version if previous else "none", by or "unknown",
    )
    return target


def model_version_rollback(*, by: str = "", reason: str = "") -> ModelVersion:
    """Activate again the version that was active before the current one.

    Walks the activation history back past the current version (and past versions that
    are gone or are the current one again). Raises NothingToRollBack when there is none.
    """
    with transaction.atomic():
        current = ModelVersion.objects.select_for_update().filter(is_active=True).first()
        earlier = _rollback_target(current)
        if earlier is not None:
            return model_version_activate(version=earlier, by=by, reason=reason or "rollback")
    raise NothingToRollBack("No earlier version was ever active: there is nothing to roll back to.")


def model_version_rollback_target() -> ModelVersion | None:
    """The version that `model_version_rollback` would activate now (None: nothing to roll back to)."""
    return _rollback_target(ModelVersion.objects.filter(is_active=True).first())


def _rollback_target(current: ModelVersion | None) -> ModelVersion | None:
    history = ModelActivation.objects.select_related("previous").order_by("-activated_at", "-id")
    for activation in history:
        earlier = activation.previous
        if earlier is not None and (current is None or earlier.pk != current.pk):
            return earlier
    return None


def _next_version_number() -> int:
    highest = (
        ModelVersion.objects.filter(version__regex=_VERSION_NAME.pattern)
        .annotate(number=Cast(Substr("version", 2), IntegerField()))
        .aggregate(highest=Max("number"))["highest"]
    )
    return (highest or 0) + 1


def _delete_artifact(name: str) -> None:
    if name:
        try:
            default_storage.delete(name)
        except Exception:  # the original error matters more; log this one
            logger.exception("could not delete the artifact %s of a model version that was not stored", name)
