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
"""

from __future__ import annotations

import time

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
