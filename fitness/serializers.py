"""Serializer helpers shared by the APIs of several apps (tasks, monitoring)."""

from __future__ import annotations

from collections.abc import Mapping

from rest_framework.exceptions import ValidationError

UNKNOWN_FIELD = "Unknown field."


class StrictFieldsMixin:
    """Refuse fields the serializer does not know: `{"colour": ["Unknown field."]}`, a 400.

    DRF ignores them, so a misspelt optional field ("lables") would be dropped without a word.
    The check runs on each object, so it also holds for every item of a list (many=True); the
    answer names the unknown fields together with the errors of the known ones.
    """

    def to_internal_value(self, data):
        unknown = sorted(set(data) - set(self.fields)) if isinstance(data, Mapping) else []
        if not unknown:
            return super().to_internal_value(data)
        errors = {name: [UNKNOWN_FIELD] for name in unknown}
        try:
            super().to_internal_value(data)
        except ValidationError as exc:
            if isinstance(exc.detail, Mapping):
                errors = {**exc.detail, **errors}
        raise ValidationError(errors)
