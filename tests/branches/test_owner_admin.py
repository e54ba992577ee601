"""Branch owners in the admin (BranchOwnerAccess): their own faults and offers, nobody else's."""

import pytest

from monitoring.services import telemetry_ingest
from tests import factories
from tests.monitoring.support import equipment, reading

pytestmark = pytest.mark.django_db


@pytest.fixture
def owners(client):
    first, second = factories.user("owner-one", staff=True), factories.user("owner-two", staff=True)
    for owner, code in ((first, "E21"), (second, "E41")):
        machine, _ = equipment(branch=factories.branch(owner=owner))
        telemetry_ingest(equipment=machine, readings=[reading(error_code=code)])
    return first, second


def test_an_owner_sees_the_faults_of_their_branches_only(client, owners):
    first, second = owners
    client.force_login(first)

    page = client.get("/admin/monitoring/fault/")

    assert page.status_code == 200
    assert "E21" in page.content.decode() and "E41" not in page.content.decode()


def test_an_owner_may_publish_offers_and_a_staff_user_without_a_branch_may_not(client, owners):
    first, _ = owners
    client.force_login(first)
    assert client.get("/admin/branches/branchoffer/add/").status_code == 200

    client.force_login(factories.user("staff-only", staff=True))
    assert client.get("/admin/branches/branchoffer/").status_code == 403
    assert client.get("/admin/monitoring/fault/").status_code == 403


PROFILE_URL = "/admin/branches/branchprofile/"
OFFER_URL = "/admin/branches/branchoffer/"


@pytest.fixture
def profiles():
    """Two owners, each with a branch and its profile."""
    from branches.services import branch_profile_update

    result = []
    for name in ("first", "second"):
        owner = factories.user(f"profile-{name}", staff=True)
        branch = factories.branch(f"profile-{name}", owner=owner)
        result.append((owner, branch_profile_update(branch=branch, price_level=2, latitude=37.5, longitude=127.0)))
    return result


def profile_form(**changes) -> dict:
    data = {"price_level": "3", "dry_cleaning": "on", "open_24_hours": "", "eco_detergents": "on",
            "latitude": "37.55", "longitude": "126.97"}
    data.update(changes)
    return {key: value for key, value in data.items() if value != ""}


def test_an_owner_edits_the_profile_of_their_branch(client, profiles):
    (owner, profile), _ = profiles
    client.force_login(owner)

    response = client.post(f"{PROFILE_URL}{profile.pk}/change/", profile_form())

    assert response.status_code == 302
    profile.refresh_from_db()
    assert (profile.price_level, profile.dry_cleaning, profile.open_24_hours, profile.eco_detergents) == (
        3, True, False, True)
    assert (profile.latitude, profile.longitude) == (37.55, 126.97)


def test_an_invalid_profile_is_refused_and_changes_nothing(client, profiles):
    (owner, profile), _ = profiles
    client.force_login(owner)

    response = client.post(f"{PROFILE_URL}{profile.pk}/change/", profile_form(latitude="123", longitude=""))

    assert response.status_code == 200 and response.context["adminform"].form.errors
    profile.refresh_from_db()
    assert (profile.price_level, profile.latitude) == (2, 37.5)


def test_an_owner_cannot_see_or_change_another_owners_profile(client, profiles):
    (owner, own), (_, other) = profiles
    client.force_login(owner)

    page = client.get(PROFILE_URL)
    change = client.get(f"{PROFILE_URL}{other.pk}/change/")
    posted = client.post(f"{PROFILE_URL}{other.pk}/change/", profile_form())

    assert [row.pk for row in page.context["cl"].result_list] == [own.pk]
    assert "profile-second" not in page.content.decode()
    assert change.status_code == 302 and change["Location"] == "/admin/"
    assert posted.status_code == 302 and posted["Location"] == "/admin/"
    other.refresh_from_db()
    assert other.price_level == 2
    assert client.post(f"{PROFILE_URL}{own.pk}/delete/", {"post": "yes"}).status_code == 403


def test_an_owner_adds_a_profile_only_for_their_own_branches(client, profiles):
    from branches.models import BranchProfile

    (owner, _), (_, other) = profiles
    new_branch = factories.branch("profile-new", owner=owner)
    client.force_login(owner)

    form = client.get(f"{PROFILE_URL}add/")
    refused = client.post(f"{PROFILE_URL}add/", {**profile_form(), "branch": other.branch_id})
    added = client.post(f"{PROFILE_URL}add/", {**profile_form(), "branch": new_branch.pk})

    choices = [name for _, name in form.context["adminform"].form.fields["branch"].choices if _]
    assert choices == ["Branch profile-first", "Branch profile-new"]
    assert "branch" in refused.context["adminform"].form.errors
    assert added.status_code == 302
    assert BranchProfile.objects.get(branch=new_branch).price_level == 3
    other.refresh_from_db()
    assert other.price_level == 2


def test_an_owner_publishes_offers_of_their_own_branches_only(client, profiles):
    from branches.models import BranchOffer
    from messaging.models import OutboxMessage

    (owner, own), (_, other) = profiles
    client.force_login(owner)

    refused = client.post(f"{OFFER_URL}add/", {"branch": other.branch_id, "title": "Not mine"})
    published = client.post(f"{OFFER_URL}add/", {"branch": own.branch_id, "title": "Eco week"}, follow=True)

    assert "branch" in refused.context["adminform"].form.errors
    offer = BranchOffer.objects.get()
    assert (offer.branch_id, offer.title, offer.published_by) == (own.branch_id, "Eco week", owner)
    assert OutboxMessage.objects.get().envelope["payload"] == {"branch_id": own.branch_id, "offer_id": offer.pk}
    assert "Published: matching customers get a recommendation" in published.content.decode()
    assert [row.pk for row in published.context["cl"].result_list] == [offer.pk]


def test_the_offer_branch_filter_lists_the_owners_branches_only(client, profiles):
    from branches.services import branch_offer_publish

    (owner, own), (_, other) = profiles
    factories.branch("profile-third", owner=owner)
    branch_offer_publish(branch=other.branch, title="Their offer")
    client.force_login(owner)

    page = client.get(OFFER_URL)

    branch_filter = next(spec for spec in page.context["cl"].filter_specs if spec.title == "branch")
    assert [name for _, name in branch_filter.lookup_choices] == ["Branch profile-first", "Branch profile-third"]
    assert "profile-second" not in page.content.decode() and "Their offer" not in page.content.decode()


def test_an_owner_sees_their_own_notifications_only(client, profiles):
    import uuid

    from notifications.models import Notification

    (owner, _), (other_owner, _) = profiles
    for recipient, title in ((owner, "Mine"), (other_owner, "Theirs")):
        Notification.objects.create(recipient=recipient, kind=Notification.Kind.EQUIPMENT_FAULT, key=f"k:{title}",
                                    event_id=uuid.uuid4(), title=title, body="E21")
    theirs = Notification.objects.get(title="Theirs")
    client.force_login(owner)

    page = client.get("/admin/notifications/notification/")

    assert [row.title for row in page.context["cl"].result_list] == ["Mine"]
    assert client.get(f"/admin/notifications/notification/{theirs.pk}/change/")["Location"] == "/admin/"
