"""fitness/db: a kept connection's health is checked only after it sat idle (the trade-off is in its docstring)."""

import time

import psycopg2
import pytest
from django.db import connections
from django.db.utils import InterfaceError, OperationalError

from fitness.db import base


def request_starts():
    connection = connections["default"]
    connection.close_if_unusable_or_obsolete()  # what Django does at each request's start and end


def kill_server_side():
    """PostgreSQL drops this connection, as a restart would."""
    connection = connections["default"]
    pid = connection.connection.info.backend_pid
    with psycopg2.connect(**connection.get_connection_params()) as other, other.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    other.close()
    time.sleep(0.2)


def select_one() -> int:
    connection = connections["default"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_an_idle_connection_is_checked_and_replaced_when_postgresql_dropped_it():
    connection = connections["default"]
    assert isinstance(connection, base.DatabaseWrapper)
    connection.close()
    connection.settings_dict["CONN_HEALTH_CHECKS"] = True
    connection.settings_dict["CONN_MAX_AGE"] = 60
    try:
        select_one()
        kill_server_side()
        connection._last_checked -= base.HEALTH_CHECK_IDLE_SECONDS + 1  # it sat idle
        request_starts()
        assert select_one() == 1  # the check found it dead, and Django reconnected

        # used a moment ago: no check, so the one request that finds it dead fails ...
        kill_server_side()
        request_starts()
        with pytest.raises((OperationalError, InterfaceError)):
            select_one()
        request_starts()  # ... Django drops the broken connection when that request ends
        request_starts()
        assert select_one() == 1
    finally:
        connection.close()
