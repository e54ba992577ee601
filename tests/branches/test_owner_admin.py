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
