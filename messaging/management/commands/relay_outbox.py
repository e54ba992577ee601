import logging
import signal
import time
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from messaging.models import OutboxMessage
from messaging.outbox import outbox_backlog, prune_outbox, relay_outbox
from observability.exporter import start_exporter

PRUNE_EVERY_SECONDS = 3600
MAX_BACKOFF_SECONDS = 30.0

# The long-running relay logs (one JSON line each, see fitness.logging); --once and --dry-run print.
logger = logging.getLogger("messaging.relay")


class Command(BaseCommand):
    help = (
        "Publish outbox events that were committed but not yet published (RabbitMQ was "
        "down, or the process died after the commit), oldest first, and prune published "
        "rows past their retention. When RabbitMQ cannot be reached the relay waits and tries "
        "again (up to 30 s apart); a row RabbitMQ refuses (unroutable, nacked) backs off alone "
        "and the rows behind it are published (see `manage.py outbox`). Runs until stopped "
        "(SIGTERM/SIGINT finish the current batch); several relays may run at once without "
        "publishing a row twice."
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="Publish what is pending now, prune, and exit.")
        parser.add_argument(
            "--dry-run", action="store_true", help="Show the pending backlog without publishing or pruning anything."
        )
        parser.add_argument(
            "--interval", type=float, default=settings.OUTBOX_RELAY_INTERVAL_SECONDS,
            help="Seconds between scans when nothing is pending (default: %(default)s).",
        )
        parser.add_argument(
            "--batch-size", type=int, default=settings.OUTBOX_RELAY_BATCH_SIZE,
            help="Rows claimed per database transaction (default: %(default)s).",
        )
        parser.add_argument(
            "--retention-days", type=float, default=settings.OUTBOX_RETENTION_DAYS,
            help="Keep published rows this many days for audit (default: %(default)s).",
        )

    def handle(self, *args, once, dry_run, interval, batch_size, retention_days, **options):
        if interval <= 0 or batch_size <= 0 or retention_days < 0:
            raise CommandError("--interval and --batch-size must be positive and --retention-days not negative")
        self.retention = timedelta(days=retention_days)
        if dry_run:
            return self._show_backlog()
        if once:
            report = relay_outbox(batch_size=batch_size)
            pruned = prune_outbox(older_than=self.retention)
            refused = (f"; {report.refused} refused by RabbitMQ, backed off (see `manage.py outbox list`)"
                       if report.refused else "")
            self.stdout.write(f"published {report.published} event(s); pruned {pruned} published row(s){refused}")
            if report.failed:
                raise CommandError(f"RabbitMQ did not take an event, it stays pending: {report.error}")
            return
        self._run_forever(interval=interval, batch_size=batch_size)

    def _show_backlog(self):
        count, age = outbox_backlog()
        self.stdout.write(f"{count} event(s) pending" + (f", oldest {age.total_seconds():.1f} s old" if age else ""))
        for row in OutboxMessage.objects.pending().order_by("pk")[:50]:
            error = f"  last error: {row.last_error[:120]}" if row.last_error else ""
            backoff = f" refused={row.refusals} next={row.next_attempt_at:%H:%M:%S}" if row.next_attempt_at else ""
            self.stdout.write(
                f"  {row.pk:>8} {row.created_at:%Y-%m-%d %H:%M:%S} {row.event_type:<30} "
                f"{row.event_id} attempts={row.publish_attempts}{backoff}{error}"
            )

    def _run_forever(self, *, interval: float, batch_size: int):
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        start_exporter()  # its own /metrics when METRICS_EXPORTER_PORT is set (a pod of its own)
        logger.info("outbox relay started: scanning every %s s, batches of %s", interval, batch_size)
        backoff = interval
        last_prune = 0.0
        while not stopping:
            close_old_connections()
            try:
                report = relay_outbox(batch_size=batch_size)
                if time.monotonic() - last_prune > PRUNE_EVERY_SECONDS:
                    pruned = prune_outbox(older_than=self.retention)
                    last_prune = time.monotonic()
                    if pruned:
                        logger.info("pruned %s published row(s) older than %s day(s)", pruned, self.retention.days)
            except Exception as exc:  # the database is down: say so, wait, try again
                logger.warning("relay scan failed, retrying in %.0f s: %s", backoff, exc)
                report = None
            if report is not None and report.published:
                logger.info("published %s event(s)", report.published)
            if report is not None and report.refused:
                # each refused row backs off alone (messaging.outbox); the relay itself does not
                logger.warning("%s event(s) refused by RabbitMQ, backed off (manage.py outbox list)", report.refused)
            if report is None or report.failed:
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            else:
                backoff = interval
            deadline = time.monotonic() + backoff
            while not stopping and time.monotonic() < deadline:
                time.sleep(min(0.1, interval))
        logger.info("outbox relay stopped")
