"""fitness/db: a kept connection's health is checked only after it sat idle (the trade-off is in its
docstring), and the hottest statements are prepared once per connection."""

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


SQUARE = "SELECT %s::int * %s::int AS product"


def run_prepared(sql: str = SQUARE, params=(6, 7), name: str = "test_square"):
    """execute_prepared on the default connection: (its result, the query log's entries)."""
    from django.test.utils import CaptureQueriesContext

    connection = connections["default"]
    with CaptureQueriesContext(connection) as captured, connection.cursor() as cursor:
        connection.execute_prepared(cursor, name, sql, list(params))
        result = cursor.fetchall()
    return result, [query["sql"] for query in captured.captured_queries]


def prepared_on_the_server() -> set[str]:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        return {name for (name,) in cursor.fetchall()}


@pytest.mark.django_db(transaction=True)
def test_a_statement_is_prepared_with_its_first_execution_and_then_only_executed():
    connections["default"].close()  # a new connection: nothing prepared yet

    result, logged = run_prepared()
    assert result == [(42,)]
    assert len(logged) == 1 and logged[0].startswith('PREPARE "test_square" AS SELECT $1::int * $2::int')
    assert logged[0].endswith('; EXECUTE "test_square" (6, 7)')  # one round trip

    result, logged = run_prepared(params=(3, 5))
    assert (result, logged) == ([(15,)], ['EXECUTE "test_square" (3, 5)'])
    assert "test_square" in prepared_on_the_server()


@pytest.mark.django_db(transaction=True)
def test_a_prepared_statement_outlives_a_rolled_back_transaction_and_not_its_connection():
    from django.db import transaction

    connection = connections["default"]
    connection.close()
    with pytest.raises(RuntimeError), transaction.atomic():
        run_prepared()
        raise RuntimeError
    assert run_prepared(params=(2, 2)) == ([(4,)], ['EXECUTE "test_square" (2, 2)'])

    connection.close()  # PostgreSQL forgets it with the session: the next connection prepares again
    result, logged = run_prepared(params=(2, 3))
    assert result == [(6,)] and logged[0].startswith('PREPARE "test_square"')


@pytest.mark.django_db(transaction=True)
def test_a_statement_that_fails_to_prepare_is_prepared_again_next_time():
    from django.db import transaction
    from django.db.utils import ProgrammingError

    connections["default"].close()
    with pytest.raises(ProgrammingError, match="no_such_table"), transaction.atomic():
        run_prepared("SELECT * FROM no_such_table WHERE id = %s", [1], name="test_broken")
    assert "test_broken" not in connections["default"].prepared_statements
    result, logged = run_prepared("SELECT %s::int + 1", [1], name="test_broken")
    assert result == [(2,)] and logged[0].startswith('PREPARE "test_broken"')


@pytest.mark.django_db
def test_a_name_given_other_sql_is_prepared_again_with_it():
    run_prepared()
    result, logged = run_prepared("SELECT %s::int - %s::int", (6, 7))
    assert result == [(-1,)]
    assert logged[0].startswith('DEALLOCATE "test_square"; PREPARE "test_square" AS SELECT $1::int - $2::int')


def test_only_psycopg2s_placeholders_can_be_prepared():
    with pytest.raises(ValueError, match="only %s placeholders"):
        base._numbered_placeholders("SELECT 'a' LIKE 'a%%'")
    assert base._numbered_placeholders("SELECT %s, %s") == "SELECT $1, $2"
