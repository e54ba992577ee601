"""Owners publish a branch profile or offer: it is stored with its event, all or nothing."""

import pytest

from branches.models import BranchOffer
from branches.services import branch_offer_publish, branch_profile_update
from messaging.models import OutboxMessage
from tests import factories

pytestmark = pytest.mark.django_db


def test_publishing_an_offer_snapshots_the_profile_and_publishes_its_event():
    branch = factories.branch()
    branch_profile_update(branch=branch, price_level=1, dry_cleaning=True, open_24_hours=False,
                          eco_detergents=True, latitude=37.5, longitude=127.0)

    offer = branch_offer_publish(branch=branch, title="Eco week", body="Half price", published_by=branch.owner)
    branch_profile_update(branch=branch, price_level=3)

    offer.refresh_from_db()
    assert (offer.price_level, offer.dry_cleaning, offer.open_24_hours, offer.eco_detergents) == (1, True, False, True)
    assert (offer.latitude, offer.longitude, offer.published_by) == (37.5, 127.0, branch.owner)
    message = OutboxMessage.objects.get()
    # published under its type, the routing key every subscriber queue is bound with
    assert (message.event_type, message.queue) == ("BranchPreferenceCreatedEvent", "BranchPreferenceCreatedEvent")
    assert message.envelope["producer"] == "branches"
    assert message.envelope["payload"] == {"branch_id": branch.pk, "offer_id": offer.pk}


def test_a_branch_without_a_profile_publishes_the_default_one():
    offer = branch_offer_publish(branch=factories.branch(), title="Open now")

    assert (offer.price_level, offer.dry_cleaning, offer.latitude) == (2, False, None)


def test_an_offer_that_cannot_be_stored_publishes_nothing():
    branch = factories.branch()

    with pytest.raises(Exception):  # noqa: B017 - a database error of any kind
        branch_offer_publish(branch=branch, title="x" * 500)

    assert not BranchOffer.objects.exists() and not OutboxMessage.objects.exists()


def test_profile_update_refuses_unknown_fields():
    with pytest.raises(TypeError, match="not profile fields"):
        branch_profile_update(branch=factories.branch(), colour="blue")
