import argparse
import textwrap
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, DjangoHelpFormatter

from messaging.retention import PruneResult, prune_all, prune_targets

PROGRESS_EVERY_SECONDS = 2.0


class HelpFormatter(DjangoHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Django's option order, with the table list printed as written."""


class Command(BaseCommand):
    help = (
        "Delete rows past their retention from the tables that grow with traffic, oldest "
        "first, in batches of --batch-size rows, each batch its own short transaction (no long "
        "locks; safe while the system runs). Celery beat runs the same prune every "
        "RETENTION_PRUNE_INTERVAL_MINUTES (the retention.prune job); this command runs it by hand."
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.description = textwrap.fill(self.help, 88)
        lines = ["tables (retention from the setting named, in days):"]
        for target in prune_targets():
            days = getattr(settings, target.retention_setting)
            lines.append(f"  {target.name:<18} {target.description}; {days} ({target.retention_setting})")
        lines.append("")
        lines.append("examples:")
        lines.append("  manage.py prune --dry-run                  what would go, per table")
        lines.append("  manage.py prune --table telemetry          prune one table")
        parser.epilog = "\n".join(lines)
        return parser

    def add_arguments(self, parser):
        parser.add_argument(
            "--table", action="append", choices=[target.name for target in prune_targets()], metavar="TABLE",
            help="Prune only this table (repeat for several; default: every table listed below).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Count what would be deleted; delete nothing.")
        parser.add_argument(
            "--batch-size", type=int, default=settings.RETENTION_BATCH_SIZE,
            help="Rows deleted per transaction (default: %(default)s, RETENTION_BATCH_SIZE).",
        )
        parser.add_argument(
            "--max-seconds", type=float, default=None,
            help="Stop between batches after this long; the rest waits for the next run (default: no limit).",
        )

    def handle(self, *args, table, dry_run, batch_size, max_seconds, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        if max_seconds is not None and max_seconds <= 0:
            raise CommandError("--max-seconds must be positive")
        last_report = [time.monotonic()]

        def progress(result: PruneResult) -> None:
            if time.monotonic() - last_report[0] >= PROGRESS_EVERY_SECONDS:
                last_report[0] = time.monotonic()
                self.stdout.write(
                    f"  {result.table}: {result.deleted:,} rows so far, {result.batches} batches, "
                    f"{result.seconds:.1f} s"
                )

        results = prune_all(
            tables=table, batch_size=batch_size, dry_run=dry_run, time_budget=max_seconds, progress=progress
        )
        for result in results:
            older = f"older than {result.cutoff:%Y-%m-%d %H:%M} UTC"
            if result.dry_run:
                self.stdout.write(f"{result.table:<18} would delete {result.deleted:,} rows {older}")
                continue
            children = f" (+{result.children_deleted:,} child rows)" if result.children_deleted else ""
            rate = f", {result.rows_per_second:,.0f} rows/s" if result.deleted else ""
            rest = "" if result.finished else "; stopped by --max-seconds, older rows remain"
            self.stdout.write(
                f"{result.table:<18} deleted {result.deleted:,} rows{children} {older} "
                f"in {result.batches} batches, {result.seconds:.1f} s{rate}{rest}"
            )
