"""The messaging views of the admin are the operators': superusers only; the outbox list shows its backlog."""

import uuid
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone

from messaging.models import DeadLetter, OutboxMessage

pytestmark = pytest.mark.django_db

OPERATOR_URLS = ("/admin/messaging/outboxmessage/", "/admin/messaging/processedevent/",
                 "/admin/messaging/deadletter/", "/admin/operations/")


def outbox_row(*, published: bool, age: timedelta = timedelta()) -> OutboxMessage:
    row = OutboxMessage.objects.create(
        event_id=uuid.uuid4(), event_type="ProbeEvent", schema_version=1, queue="task.submitted", envelope={},
        published_at=timezone.now() if published else None,
    )
    OutboxMessage.objects.filter(pk=row.pk).update(created_at=timezone.now() - age)
    return row


def test_the_outbox_list_starts_with_the_unpublished_count_and_the_oldest_age(admin_client):
    outbox_row(published=True, age=timedelta(hours=1))
    outbox_row(published=False, age=timedelta(seconds=90))
    outbox_row(published=False, age=timedelta(seconds=5))

    page = admin_client.get("/admin/messaging/outboxmessage/").content.decode()

    assert "<strong>2</strong> unpublished messages" in page
    assert "the oldest has waited <strong>90." in page


def test_an_empty_outbox_says_so(admin_client):
    page = admin_client.get("/admin/messaging/outboxmessage/").content.decode()

    assert "<strong>0</strong> unpublished messages." in page


def test_staff_users_get_403_even_with_every_messaging_permission(client):
    DeadLetter.objects.create(queue="task.submitted", event_id=str(uuid.uuid4()), deaths=1)
    staff = get_user_model().objects.create_user("staff", password="pw", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="messaging"))
    client.force_login(staff)

    for url in OPERATOR_URLS:
        assert client.get(url).status_code == 403, url
    dead_letter = DeadLetter.objects.get()
    response = client.post("/admin/messaging/deadletter/",
                           {"action": "replay_selected", "_selected_action": [dead_letter.pk]})
    assert response.status_code == 403
    dead_letter.refresh_from_db()
    assert dead_letter.replays == 0
    assert "Operations" not in client.get("/admin/").content.decode()


def test_still_dead_lettered_selects_the_rows_whose_status_says_so():
    now = timezone.now()
    rows = [
        DeadLetter(queue="task.submitted", event_id=str(uuid.uuid4()), **fields) for fields in (
            {"deaths": 1},  # archived, waiting
            {"deaths": 0},  # the consumer's record, before the archiver's
            {"deaths": 1, "replays": 1, "replayed_at": now},  # replayed
            {"deaths": 2, "replays": 1, "replayed_at": now},  # replayed and dead again
            {"deaths": 1, "purges": 1, "purged_at": now},  # purged
        )
    ]
    DeadLetter.objects.bulk_create(rows)

    selected = set(DeadLetter.objects.still_dead_lettered().values_list("event_id", flat=True))

    assert selected == {row.event_id for row in DeadLetter.objects.all() if row.status == "dead-lettered"}
    assert len(selected) == 3


def test_the_outbox_list_filters_refused_rows_and_shows_their_errors(admin_client):
    refused = outbox_row(published=False)
    OutboxMessage.objects.filter(pk=refused.pk).update(
        refusals=2, next_attempt_at=timezone.now(), last_error="RabbitMQ nacked the message for 'x'")
    outbox_row(published=False)
    outbox_row(published=True)

    page = admin_client.get("/admin/messaging/outboxmessage/?state=refused").content.decode()

    assert "RabbitMQ nacked the message" in page
    assert "1 outbox message" in page
    discarded = outbox_row(published=False)
    OutboxMessage.objects.filter(pk=discarded.pk).update(discarded_at=timezone.now(), discarded_by="bob")
    assert "2 outbox messages" in admin_client.get("/admin/messaging/outboxmessage/?state=pending").content.decode()
    page = admin_client.get("/admin/messaging/outboxmessage/").content.decode()
    assert "<strong>2</strong> unpublished messages" in page  # a discarded row is not waiting
