"""Django's PostgreSQL backend, checking a kept connection's health only after it sat idle.

With CONN_HEALTH_CHECKS Django runs a `SELECT 1` before the first query of every request
that reuses a persistent connection (CONN_MAX_AGE): under the upload benchmark's load that
round trip was a tenth of an upload's time. Without it, a connection PostgreSQL closed (a
restart, a failover, an idle timeout) fails the first request that uses it with a 500;
Django closes it at the end of that request and the next one reconnects: one failed request
per web worker.

Here the check runs only when the connection has not been used for HEALTH_CHECK_IDLE_SECONDS.
A connection can only be found dead by a request if no request used it while PostgreSQL was
going away: a busy worker's requests during a restart fail anyway (the server is gone) and
leave the connection closed (Django drops a connection after an error it cannot use), so the
worker reconnects once PostgreSQL is back. What is left is a connection that PostgreSQL
dropped less than a second after its last use without a restart being noticed, which costs
that one request (as every request costs it with no check at all). An idle worker, the
usual case after a restart, still checks first and reconnects, and its user sees nothing.

It also runs the request path's hottest statements as server-side prepared statements
(`execute_prepared`): PostgreSQL then plans them once per connection instead of on every
execution. psycopg2 has no prepared statements of its own (psycopg 3 prepares repeated
queries by itself), so this is SQL's PREPARE and EXECUTE.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from django.db.backends.postgresql import base

HEALTH_CHECK_IDLE_SECONDS = 1.0


class DatabaseWrapper(base.DatabaseWrapper):
    _last_checked: float | None = None

    def close_if_health_check_failed(self) -> None:
        if self.connection is not None and self.health_check_enabled and not self.health_check_done:
            now = time.monotonic()
            if self._last_checked is not None and now - self._last_checked < HEALTH_CHECK_IDLE_SECONDS:
                self.health_check_done = True  # used a moment ago: see the module's docstring
            self._last_checked = now
        super().close_if_health_check_failed()

    def connect(self) -> None:
        super().connect()
        self._last_checked = time.monotonic()
        self.prepared_statements: dict[str, str] = {}  # name -> SQL, of this session: gone with it

    def execute_prepared(self, cursor, name: str, sql: str, params: Sequence) -> None:
        """`cursor.execute(sql, params)` through the prepared statement `name` of this connection.

        The first call on a connection sends PREPARE and EXECUTE together; every later one only
        the EXECUTE, which PostgreSQL does not plan again: the token lookup's planning was twice its
        execution (0.2 ms against 0.1). A prepared statement outlives a rolled-back transaction,
        and its plan is remade by PostgreSQL itself when a table it reads changes. Needs a
        session of its own: not for PgBouncer in transaction mode.
        `sql` uses psycopg2's %s placeholders and no other %.
        """
        quoted = self.ops.quote_name(name)
        execute = f"EXECUTE {quoted} ({', '.join(['%s'] * len(params))})" if params else f"EXECUTE {quoted}"
        if self.prepared_statements.get(name) == sql:
            cursor.execute(execute, params)
            return
        # not prepared on this connection yet: PREPARE and EXECUTE in one round trip (and one
        # entry of the query log); a failed PREPARE runs nothing and is tried again next time
        deallocate = f"DEALLOCATE {quoted}; " if name in self.prepared_statements else ""
        self.prepared_statements.pop(name, None)
        cursor.execute(f"{deallocate}PREPARE {quoted} AS {_numbered_placeholders(sql)}; {execute}", params)
        self.prepared_statements[name] = sql


def _numbered_placeholders(sql: str) -> str:
    """psycopg2's %s placeholders as PREPARE's $1, $2, ..."""
    if re.search(r"%[^s]", sql):
        raise ValueError(f"only %s placeholders can be prepared: {sql[:80]}...")
    numbers = iter(range(1, sql.count("%s") + 1))
    return re.sub("%s", lambda _match: f"${next(numbers)}", sql)
