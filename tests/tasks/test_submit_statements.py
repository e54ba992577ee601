"""The SQL statements of one POST /api/v1/tasks/, pinned so that round trips cannot creep back.

Every statement is a round trip to PostgreSQL (BEGIN and COMMIT too); a prepared one (fitness.db)
is named here by the statement behind its EXECUTE. An upload needs:
authentication (which brings the helper's branch), and one statement, its own transaction, that
inserts the task (the Idempotency-Key checked by the insert itself: INSERT ... ON CONFLICT) and
its outbox row; after its commit, the NOTIFY that wakes the relay, a statement of its own
(messaging.outbox explains why). Nothing waits for RabbitMQ: the relay publishes.
"""

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from messaging.models import OutboxMessage
from tests import factories
from tests.support import drain_queue, statement_sql

URL = "/api/v1/tasks/"
AUTHENTICATION = ["SELECT knox_authtoken"]  # the token, its user, the helper row and its branch


def statement(sql: str) -> str:
    """'INSERT INTO "tasks_laundrytask" (...) ...' -> 'INSERT tasks_laundrytask'; a WITH statement
    names each of its writes: 'INSERT tasks_laundrytask + INSERT messaging_outboxmessage'."""
    if "pg_notify" in sql:
        return "NOTIFY"
    if sql.startswith("WITH"):
        writes = re.findall(r'\b(INSERT|UPDATE)\s+(?:INTO\s+)?"?(\w+)', sql)
        return " + ".join(f"{verb} {table}" for verb, table in writes)
    table = re.search(r'\b(?:FROM|INTO|UPDATE)\s+"?(\w+)', sql)
    return f"{sql.split()[0]} {table.group(1)}" if table else sql.split()[0]


def statements_of_a_post(client, photo: bytes, **headers) -> tuple[int, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        response = client.post(URL, {"photo": SimpleUploadedFile("laundry.jpg", photo, "image/jpeg")}, **headers)
    return response.status_code, [statement(statement_sql(q["sql"])) for q in captured.captured_queries]


@pytest.fixture
def client(transactional_db, route_events):
    # committed for real: keep its events away from an AI worker another test may have started,
    # and take them out of the queue they went to afterwards
    route_events("TaskSubmittedEvent", "preference.created")
    yield factories.api_client_for(factories.helper())
    drain_queue("preference.created")


@pytest.mark.parametrize("headers", [{}, {"HTTP_IDEMPOTENCY_KEY": "k-1"}], ids=["no-key", "with-a-key"])
def test_an_upload_is_one_statement_that_inserts_the_task_and_its_event(client, headers):
    status, statements = statements_of_a_post(client, factories.photo_bytes(), **headers)

    assert status == 202
    assert statements == [*AUTHENTICATION, "INSERT tasks_laundrytask + INSERT messaging_outboxmessage", "NOTIFY"]


def test_a_replayed_key_costs_the_insert_that_finds_it_and_the_read_of_the_first_task(client):
    photo = factories.photo_bytes()
    statements_of_a_post(client, photo, HTTP_IDEMPOTENCY_KEY="k-1")

    status, statements = statements_of_a_post(client, photo, HTTP_IDEMPOTENCY_KEY="k-1")

    assert status == 202
    assert statements == [
        *AUTHENTICATION, "INSERT tasks_laundrytask + INSERT messaging_outboxmessage", "SELECT tasks_laundrytask",
    ]
    assert OutboxMessage.objects.count() == 1, "the replay's statement inserted no event"
