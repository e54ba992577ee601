"""Branches: the owner's writes. A producer of BranchPreferenceCreatedEvent; it imports
nothing from `notifications` or `ml`."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from branches.models import Branch, BranchOffer, BranchProfile
from messaging.contracts import BranchPreferenceCreatedEvent
from messaging.outbox import publish_event

PROFILE_FIELDS = ("price_level", "dry_cleaning", "open_24_hours", "eco_detergents", "latitude", "longitude")


def branch_profile_update(*, branch: Branch, **fields) -> BranchProfile:
    """Create or change what the branch offers (the fields of BranchProfile)."""
    unknown = set(fields) - set(PROFILE_FIELDS)
    if unknown:
        raise TypeError(f"not profile fields: {sorted(unknown)}")
    profile, _ = BranchProfile.objects.update_or_create(branch=branch, defaults=fields)
    return profile


def branch_offer_publish(
    *, branch: Branch, title: str, body: str = "", published_by: AbstractBaseUser | None = None
) -> BranchOffer:
    """Publish the branch's current profile with a message; matching customers hear of it.

    The offer and its BranchPreferenceCreatedEvent commit together (transactional outbox).
    """
    profile = BranchProfile.objects.filter(branch=branch).first() or BranchProfile(branch=branch)
    with transaction.atomic():
        offer = BranchOffer.objects.create(
            branch=branch, title=title, body=body, published_by=published_by,
            **{name: getattr(profile, name) for name in PROFILE_FIELDS},
        )
        publish_event(BranchPreferenceCreatedEvent(branch_id=branch.pk, offer_id=offer.pk))
    return offer
