import signal
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from messaging.models import OutboxMessage
from messaging.outbox import outbox_backlog, prune_outbox, relay_outbox
from messaging.relay import Relay
from observability.exporter import start_exporter


class Command(BaseCommand):
    help = (
        "Publish committed outbox events to RabbitMQ, oldest first, in batches with pipelined "
        "publisher confirms, and prune published rows past their retention. The only publisher "
        "of events: requests just commit the row, and a NOTIFY right after the commit wakes the relay at once; it also "
        "scans every --interval seconds, so a lost notification only delays. When RabbitMQ "
        "cannot be used (down, or blocked by an alarm) the relay waits and tries again (0.5 s "
        "doubling up to 5 s apart); a row RabbitMQ refuses (unroutable, nacked) backs off alone "
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
            help="Seconds between scans when no notification comes (default: %(default)s).",
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
        relay = Relay(interval=interval, batch_size=batch_size, retention=self.retention)
        signal.signal(signal.SIGTERM, lambda signum, frame: relay.stop())
        signal.signal(signal.SIGINT, lambda signum, frame: relay.stop())
        start_exporter()  # its own /metrics when METRICS_EXPORTER_PORT is set (a pod of its own)
        relay.run()
