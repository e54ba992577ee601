"""The outbox relay's loop (`manage.py relay_outbox`): woken by NOTIFY, a scan every few seconds.

    relay = Relay(interval=5.0, batch_size=500)
    relay.run()  # until relay.stop() (the command calls it on SIGTERM/SIGINT)

`publish_event` has a NOTIFY sent on OUTBOX_CHANNEL right after the transaction that writes
the row commits (messaging.outbox.notify_relays). The relay LISTENs on a connection of its
own (autocommit) and waits on its socket with `select()`, so it wakes as soon as a commit
notifies; when nothing comes within `interval` it scans anyway, so a notification that was
lost (the relay was restarting, its connection broke) only delays the rows. Each wake
publishes everything claimable, batch by batch (messaging.outbox.relay_outbox).

LISTEN comes before the first scan: a row committed after the scan began notifies a
connection that is already listening, and one committed before is found by the scan.
When RabbitMQ cannot be used (down, or blocked by an alarm: the confirms do not come within
messaging.broker.CONFIRM_TIMEOUT_SECONDS) the relay backs off, 0.5 s doubling up to 5 s; when
PostgreSQL fails it says so, reconnects and backs off the same way.
"""

from __future__ import annotations

import logging
import select
import socket
import time
from datetime import timedelta

import psycopg2
from django.db import close_old_connections, connection

from messaging.outbox import OUTBOX_CHANNEL, PublishReport, prune_outbox, relay_outbox

logger = logging.getLogger("messaging.relay")

PRUNE_EVERY_SECONDS = 3600
# Short: the relay is the only way events reach RabbitMQ, so its backoff is their delay once
# RabbitMQ is back (a fault alert has 15 s); one connection attempt per relay every 5 s costs nothing.
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 5.0


class Listener:
    """A psycopg2 connection of its own, in autocommit, LISTENing on OUTBOX_CHANNEL."""

    def __init__(self) -> None:
        self.connection = None

    def ensure(self) -> None:
        if self.connection is None or self.connection.closed:
            conn = psycopg2.connect(**connection.get_connection_params())
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(f"LISTEN {OUTBOX_CHANNEL}")
            self.connection = conn

    def wait(self, timeout: float, *also: socket.socket) -> bool:
        """Wait until a notification comes (True) or `timeout` passes, or one of `also` is readable (False)."""
        conn = self.connection
        if not conn.notifies:
            readable, _, _ = select.select([conn, *also], [], [], timeout)
            if conn in readable:
                conn.poll()  # reads the notifications; raises when the connection broke
        notified = bool(conn.notifies)
        conn.notifies.clear()
        return notified

    def close(self) -> None:
        conn, self.connection = self.connection, None
        if conn is not None and not conn.closed:
            conn.close()


class Relay:
    def __init__(self, *, interval: float, batch_size: int, retention: timedelta) -> None:
        self.interval = interval
        self.batch_size = batch_size
        self.retention = retention
        self.listener = Listener()
        self.stopping = False
        # stop() writes here so that a wait returns at once
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)

    def stop(self) -> None:
        """Finish the current batch and return from run(); safe to call from a signal handler."""
        self.stopping = True
        try:
            self._wake_writer.send(b"\0")
        except OSError:  # its buffer is full: a wake-up is already pending
            pass

    def run(self) -> None:
        logger.info(
            "outbox relay started: listening on %s, scanning every %s s, batches of %s",
            OUTBOX_CHANNEL, self.interval, self.batch_size,
        )
        backoff = 0.0
        last_prune = 0.0
        try:
            while not self.stopping:
                report = self._publish()
                if report is not None and time.monotonic() - last_prune > PRUNE_EVERY_SECONDS:
                    last_prune = time.monotonic()
                    self._prune()
                if report is None or report.failed:
                    backoff = min(max(backoff * 2, FIRST_BACKOFF_SECONDS), MAX_BACKOFF_SECONDS)
                    why = report.error if report is not None else "the database could not be used"
                    logger.warning("relay backs off %.0f s: %s", backoff, why)
                    self._sleep(backoff)
                    continue
                backoff = 0.0
                self._wait()
        finally:
            self.listener.close()
            logger.info("outbox relay stopped")

    def _publish(self) -> PublishReport | None:
        close_old_connections()
        try:
            self.listener.ensure()  # before the scan: see the module's docstring
            report = relay_outbox(batch_size=self.batch_size)
        except Exception as exc:  # the database is down: say so, wait, try again
            logger.warning("relay scan failed: %s", exc)
            self.listener.close()
            return None
        if report.published:
            logger.info("published %s event(s)", report.published)
        if report.refused:
            # each refused row backs off alone (messaging.outbox); the relay itself does not
            logger.warning("%s event(s) refused by RabbitMQ, backed off (manage.py outbox list)", report.refused)
        return report

    def _prune(self) -> None:
        try:
            pruned = prune_outbox(older_than=self.retention)
        except Exception as exc:
            logger.warning("pruning the outbox failed: %s", exc)
            return
        if pruned:
            logger.info("pruned %s published row(s) older than %s day(s)", pruned, self.retention.days)

    def _wait(self) -> None:
        """Until a commit notifies, `interval` passes, or stop() is called."""
        try:
            self.listener.wait(self.interval, self._wake_reader)
        except Exception as exc:  # the listening connection broke: scan now, listen again
            logger.warning("relay lost its LISTEN connection: %s", exc)
            self.listener.close()
        self._drain_wake()

    def _sleep(self, seconds: float) -> None:
        if not self.stopping:
            select.select([self._wake_reader], [], [], seconds)
        self._drain_wake()

    def _drain_wake(self) -> None:
        try:
            while self._wake_reader.recv(64):
                pass
        except (BlockingIOError, OSError):
            pass
