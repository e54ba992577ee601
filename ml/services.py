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
from ml.models import ModelVersion

logger = logging.getLogger(__name__)

_VERSION_NAME = re.compile(r"^v[0-9]+$")
_NAMING_ATTEMPTS = 5


class ModelVersionNotFound(LookupError):
    """No model version has this name."""


def model_version_create(
    *,
    artifact: bytes,
    architecture: str,
    image_size: int,
    label_spaces: Mapping[str, Sequence[str]],
    metrics: Mapping[str, Any],
    activate: bool,
    notes: str = "",
) -> ModelVersion:
    """Store trained weights as the next version ("v1", "v2", ...), optionally activating it.

    `artifact` is the serialised state dict. The file is written first and the row is
    created (and activated) in one transaction; if that fails, the file is deleted, so a
    failure leaves neither a row nor a file behind.
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
        )
        version.artifact.save(f"{version.version}.pt", ContentFile(artifact), save=False)
        try:
            with transaction.atomic():
                version.save()
                if activate:
                    version = model_version_activate(version=version)
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


def model_version_activate(*, version: ModelVersion | str) -> ModelVersion:
    """Make `version` the one active version, deactivating the previous one in the same transaction.

    Concurrent activations are serialised by row locks on the target and on the active
    version, so the partial unique constraint (at most one active row) always holds.
    Raises ModelVersionNotFound for an unknown version name.
    """
    name = version.version if isinstance(version, ModelVersion) else version
    with transaction.atomic():
        try:
            target = ModelVersion.objects.select_for_update().get(version=name)
        except ModelVersion.DoesNotExist:
            raise ModelVersionNotFound(f"There is no model version {name!r}.") from None
        # wait for any activation in progress, then see what is active now
        list(ModelVersion.objects.select_for_update().filter(is_active=True).exclude(pk=target.pk))
        if target.is_active:
            return target
        ModelVersion.objects.filter(is_active=True).exclude(pk=target.pk).update(is_active=False)
        target.is_active = True
        target.activated_at = timezone.now()
        target.save(update_fields=["is_active", "activated_at"])
    logger.info("model %s is now the active version", target.version)
    return target


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
