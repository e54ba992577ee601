"""Reading model versions. No torch here: the web process and the admin use these."""

from __future__ import annotations

from django.db.models import QuerySet

from ml.models import ModelVersion


def model_version_active() -> ModelVersion | None:
    """The version the AI workers read photos with, or None when none is active."""
    return ModelVersion.objects.filter(is_active=True).first()


def model_version_active_name() -> str | None:
    """Just the active version's name: the cheap query behind the workers' hot reload."""
    return ModelVersion.objects.filter(is_active=True).values_list("version", flat=True).first()


def model_version_get(*, version: str) -> ModelVersion | None:
    """The version with this name ("v3"), or None."""
    return ModelVersion.objects.filter(version=version).first()


def model_version_list() -> QuerySet[ModelVersion]:
    """Every version, newest first."""
    return ModelVersion.objects.order_by("-created_at", "-id")
