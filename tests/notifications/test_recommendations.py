"""Recommendations: only customers whose preferences an offer meets get one, once each."""

import time
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from branches.models import CustomerPreference
from branches.selectors import customer_ids_matching_offer
from branches.services import branch_offer_publish, branch_profile_update
from messaging.broker import publish_envelope
from messaging.models import OutboxMessage, ProcessedEvent
from notifications.models import Notification
from notifications.services import device_register, notification_dispatch
from tests import factories
from tests.notifications.conftest import fcm_worker_env
from tests.support import WorkerProcess, drain_queue, wait_for

GANGNAM = (37.4979, 127.0276)
CONSUMER = "notifications.send_recommendations"


def customer(name: str, **preferences):
    user = factories.user(f"{name}-{uuid.uuid4().hex[:6]}")
    CustomerPreference.objects.create(customer=user, **preferences)
    return user


def customers_and_offer():
    """An offer (standard price, dry cleaning, eco, not 24 h, in Gangnam) and who should match it."""
    branch = factories.branch()
    branch_profile_update(branch=branch, price_level=2, dry_cleaning=True, open_24_hours=False, eco_detergents=True,
                          latitude=GANGNAM[0], longitude=GANGNAM[1])
    matching = {
        customer("anything"),
        customer("premium-ok", max_price_level=3),
        customer("standard-ok", max_price_level=2),
        customer("dry-and-eco", wants_dry_cleaning=True, wants_eco_detergents=True),
        customer("near", latitude=37.5045, longitude=127.0276, max_distance_km=3),  # ~0.7 km away
    }
    not_matching = {
        customer("budget-only", max_price_level=1),
        customer("night-owl", wants_24_hours=True),
        customer("far", latitude=37.5663, longitude=126.9019, max_distance_km=3),  # Mapo, ~13 km away
        customer("opted-out", receive_recommendations=False),
        factories.user("no-preferences"),
    }
    gone = customer("inactive")
    gone.is_active = False
    gone.save()
    not_matching.add(gone)
    return branch, matching, not_matching


@pytest.mark.django_db
def test_only_customers_whose_every_wish_the_offer_meets_match_in_one_query():
    branch, matching, _ = customers_and_offer()
    offer = branch_offer_publish(branch=branch, title="Dry cleaning week")

    with CaptureQueriesContext(connection) as queries:
        matched = set(customer_ids_matching_offer(offer=offer))

    assert matched == {user.pk for user in matching}
    assert len(queries) == 1


@pytest.mark.django_db
def test_an_offer_without_a_location_matches_only_customers_without_a_distance_limit():
    branch = factories.branch()
    anywhere = customer("anywhere")
    customer("near", latitude=37.5045, longitude=127.0276, max_distance_km=50)

    offer = branch_offer_publish(branch=branch, title="No address yet")

    assert list(customer_ids_matching_offer(offer=offer)) == [anywhere.pk]


@pytest.mark.django_db
def test_many_matching_customers_are_notified_in_batches_with_a_bounded_number_of_queries(settings):
    settings.PUSH_BACKEND = "inbox"
    User = get_user_model()
    users = User.objects.bulk_create(User(username=f"bulk-{i}") for i in range(1200))
    CustomerPreference.objects.bulk_create(CustomerPreference(customer=user) for user in users)
    offer = branch_offer_publish(branch=factories.branch(), title="Grand opening")

    with CaptureQueriesContext(connection) as queries:
        report = notification_dispatch(
            kind="recommendation", key=f"recommendation:{offer.pk}", event_id=uuid.uuid4(),
            recipient_ids=customer_ids_matching_offer(offer=offer).iterator(chunk_size=2000),
            title="t", body="b", data={},
        )

    assert report.notifications == 1200 and Notification.objects.filter(status="stored").count() == 1200
    assert len(queries) <= 10, [q["sql"][:80] for q in queries.captured_queries]


# --- through the worker-notify pool ------------------------------------------------------


@pytest.fixture(scope="module")
def notify_worker(django_db_setup, django_db_blocker, broker_vhost, log_dir, fcm_server, fcm_credentials):
    drain_queue("preference.created")
    worker = WorkerProcess(
        ["preference.created"], name="notify", concurrency=1, log_dir=log_dir,
        **fcm_worker_env(fcm_server, fcm_credentials),
    ).start()
    wait_for(lambda: "push backend fcm ready" in worker.log(), what="the pool to warm up the push backend")
    yield worker
    worker.stop()


@pytest.mark.django_db(transaction=True)
def test_a_published_offer_is_recommended_to_each_matching_customer_once(notify_worker, relay, fcm_server):
    fcm_server.reset()
    branch, matching, not_matching = customers_and_offer()
    for user in matching | not_matching:
        device_register(user=user, token=f"phone-of-{user.username}", platform="android")

    offer = branch_offer_publish(branch=branch, title="Dry cleaning week", body="Eco detergents, fair prices")
    wait_for(lambda: ProcessedEvent.objects.filter(consumer=CONSUMER).exists(), timeout=30, what="the offer processed")

    notified = Notification.objects.filter(kind="recommendation")
    assert {n.recipient_id for n in notified} == {user.pk for user in matching}
    assert {n.key for n in notified} == {f"recommendation:{offer.pk}"} and {n.status for n in notified} == {"sent"}
    assert sorted(send.token for send in fcm_server.sends) == sorted(f"phone-of-{u.username}" for u in matching)
    message = fcm_server.sends[0].message
    assert message["notification"]["title"] == f"{branch.name}: Dry cleaning week"
    assert message["data"]["offer_id"] == str(offer.pk) and message["data"]["kind"] == "recommendation"

    publish_envelope("preference.created", OutboxMessage.objects.get().envelope)  # redelivered
    wait_for(lambda: "skipped: already processed" in notify_worker.log(), what="the redelivery to be skipped")
    time.sleep(0.5)
    assert len(fcm_server.sends) == len(matching) and notified.count() == len(matching)
