"""The operators' overview page, /admin/operations/: queues with their dead-letter queues, the outbox, the model."""

from __future__ import annotations

import re
import uuid

import pytest
from django.test import override_settings
from django.utils import timezone

from messaging.models import DeadLetter, OutboxMessage
from tests.observability.scrape import closed_port
from tests.observability.test_queue_depths import put
from tests.support import own_vhost, wait_for

pytestmark = pytest.mark.django_db

WORK, DLQ = "preference.created", "preference.created.dlq"


@pytest.fixture
def vhost(broker_vhost):
    with own_vhost("operations") as url:
        yield url


def queue_row(page: str, queue: str) -> list[str]:
    """The cells of the queue table's row of `queue`, as text."""
    row = re.search(rf"<tr>\s*<td><strong>{re.escape(queue)}</strong>.*?</tr>", page, re.S)
    assert row, f"no row for {queue}"
    return [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td>(.*?)</td>", row.group(0), re.S)]


def test_the_page_shows_each_queue_with_its_dead_letter_queue_and_the_outbox(admin_client, vhost):
    put(WORK, 4)
    put(DLQ, 2)
    DeadLetter.objects.create(queue=WORK, event_id=str(uuid.uuid4()), deaths=1)
    DeadLetter.objects.create(queue=WORK, event_id=str(uuid.uuid4()), deaths=1, replays=1,
                              replayed_at=timezone.now())  # replayed: not waiting
    OutboxMessage.objects.create(event_id=uuid.uuid4(), event_type="ProbeEvent", schema_version=1,
                                 queue=WORK, envelope={})

    def row():
        cells = queue_row(admin_client.get("/admin/operations/").content.decode(), WORK)
        # ready, unacked, consumers, in its .dlq, dead letters waiting; the management API lags a few seconds
        return cells if cells[2:7] == ["4", "0", "0 (no worker!)", "2", "1"] else None

    wait_for(row, timeout=30, interval=0.5, what="the operations page to show the broker's counts")
    page = admin_client.get("/admin/operations/").content.decode()
    assert "<strong>1</strong> unpublished message;" in page
    assert "No active version." in page
    assert f'href="/admin/messaging/deadletter/?queue={WORK}"' in page


def test_with_rabbitmq_unreachable_the_page_still_shows_the_outbox(admin_client):
    with override_settings(CELERY_BROKER_URL=f"amqp://guest:guest@127.0.0.1:{closed_port()}//",
                           RABBITMQ_MANAGEMENT_URL=f"http://127.0.0.1:{closed_port()}"):
        page = admin_client.get("/admin/operations/")

    assert page.status_code == 200
    text = page.content.decode()
    assert "RabbitMQ cannot be asked for queue depths" in text
    assert "unpublished messages." in text
    assert queue_row(text, WORK)[2:7] == ["?", "?", "?", "?", "0"]


def test_owners_and_other_staff_get_403(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("staff", password="pw", is_staff=True))
    assert client.get("/admin/operations/").status_code == 403


def test_the_admin_index_links_to_it_for_superusers(admin_client):
    assert 'href="/admin/operations/"' in admin_client.get("/admin/").content.decode()


def test_rows_rabbitmq_refused_are_listed_with_their_error_and_next_attempt(admin_client):
    refused = OutboxMessage.objects.create(
        event_id=uuid.uuid4(), event_type="EquipmentFaultEvent", schema_version=1, queue="removed.queue",
        envelope={}, refusals=3, publish_attempts=3, next_attempt_at=timezone.now(),
        last_error="no queue is bound for routing key 'removed.queue'",
    )
    OutboxMessage.objects.create(event_id=uuid.uuid4(), event_type="ProbeEvent", schema_version=1,
                                 queue=WORK, envelope={})  # pending, never refused: not listed

    page = admin_client.get("/admin/operations/").content.decode()

    assert "<strong>1</strong> message refused by RabbitMQ" in page
    assert f'href="/admin/messaging/outboxmessage/{refused.pk}/change/"' in page
    assert "no queue is bound for routing key &#x27;removed.queue&#x27;" in page
    assert "manage.py outbox retry ID" in page


def test_the_page_says_whether_rabbitmq_is_reachable(admin_client, broker_url):
    assert "Reachable (checked" in admin_client.get("/admin/operations/").content.decode()

    broker_url(f"amqp://guest:guest@127.0.0.1:{closed_port()}//")
    page = admin_client.get("/admin/operations/").content.decode()

    assert "RabbitMQ is unreachable (unreachable:" in page
    assert "The web keeps accepting work into the outbox" in page
