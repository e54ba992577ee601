import argparse
import getpass

from django.core.management.base import BaseCommand, CommandError

from fitness.formatting import clip, table, when
from messaging.models import OutboxMessage
from messaging.outbox import OutboxOperationError, outbox_discard, outbox_retry

MAX_ROWS = 200


def outbox_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not an outbox message id (a positive number): {text!r}")
    return value


class Command(BaseCommand):
    help = (
        "Operate on outbox rows that RabbitMQ refused (returned as unroutable, nacked): each "
        "waits alone until its next_attempt_at (the wait doubles with every refusal, up to "
        "OUTBOX_REFUSED_BACKOFF_MAX_SECONDS) while the relay publishes the rows behind it. "
        "`list` shows them with their errors, `retry` publishes them now, `discard` marks them "
        "never to be published (the row stays, with who, when and why). Ids are the outbox "
        "rows' (admin: Messaging > Outbox messages). Run `manage.py outbox <subcommand> --help`."
    )

    def add_arguments(self, parser):
        commands = parser.add_subparsers(dest="subcommand", metavar="{list,retry,discard}", required=True)

        listing = commands.add_parser(
            "list", help="Rows RabbitMQ refused that wait for a retry, with their errors (or --discarded).",
            description="Rows RabbitMQ refused and that wait for their next attempt: the event, its queue, "
                        "how often it was refused, when the relay tries next, and the last error.",
        )
        listing.add_argument("--discarded", action="store_true", help="Show the discarded rows instead.")
        listing.add_argument("--limit", type=int, default=MAX_ROWS, help="At most this many (default %(default)s).")

        retry = commands.add_parser(
            "retry", help="Publish refused rows now, without waiting for their next_attempt_at.",
            description="Publish the given rows now, through the relay's own claim (a relay running at "
                        "the same time never publishes one twice), and say for each whether RabbitMQ "
                        "took it. A row refused again backs off as before. Records who retried it.",
        )
        retry.add_argument("ids", nargs="*", type=outbox_id, metavar="ID", help="Outbox message ids.")
        retry.add_argument("--all-failing", action="store_true", help="Every row RabbitMQ refused that waits.")
        retry.add_argument("--dry-run", action="store_true", help="Show what would be retried; change nothing.")
        retry.add_argument("--by", default="", help="Who retries (recorded on the row; default: the OS user).")

        discard = commands.add_parser(
            "discard", help="Never publish these rows; they stay, marked with who, when and why.",
            description="Mark the given unpublished rows discarded: the relay never publishes them. The "
                        "rows are kept (admin: Messaging > Outbox messages, state discarded) with who "
                        "discarded them, when and why. Published or unknown ids are refused and nothing "
                        "changes.",
        )
        discard.add_argument("ids", nargs="+", type=outbox_id, metavar="ID", help="Outbox message ids.")
        discard.add_argument("--reason", required=True, help="Why (recorded on the row).")
        discard.add_argument("--dry-run", action="store_true", help="Show what would be discarded; change nothing.")
        discard.add_argument("--by", default="", help="Who discards (recorded on the row; default: the OS user).")

    def handle(self, *args, subcommand: str, **options):
        try:
            return getattr(self, f"_{subcommand}")(**options)
        except OutboxOperationError as exc:
            raise CommandError(str(exc)) from exc

    def _list(self, *, discarded, limit, **options):
        if limit < 1:
            raise CommandError("--limit must be at least 1")
        if discarded:
            rows = OutboxMessage.objects.filter(discarded_at__isnull=False).order_by("-discarded_at")
            total = rows.count()
            self._table(["ID", "EVENT TYPE", "QUEUE", "DISCARDED", "BY", "REASON"], [
                [r.pk, r.event_type, r.queue, when(r.discarded_at), r.discarded_by, clip(r.discard_reason, 60)]
                for r in rows[:limit]
            ], right={0})
            self.stdout.write(f"{total} discarded row(s) (times UTC)")
            return
        rows = OutboxMessage.objects.failing().order_by("pk")
        total = rows.count()
        self._table(["ID", "EVENT TYPE", "QUEUE", "REFUSALS", "NEXT ATTEMPT", "LAST ERROR"], [
            [r.pk, r.event_type, r.queue, r.refusals, when(r.next_attempt_at), clip(r.last_error, 80)]
            for r in rows[:limit]
        ], right={0, 3})
        self.stdout.write(f"{total} refused row(s) waiting (times UTC); `outbox retry ID` or `outbox discard ID`")

    def _retry(self, *, ids, all_failing, dry_run, by, **options):
        if all_failing and ids:
            raise CommandError("--all-failing retries every refused row: leave it out to retry by id")
        if not all_failing and not ids:
            raise CommandError("say which rows to retry: ID..., or --all-failing")
        outcomes = outbox_retry(ids=None if all_failing else ids, by=self._who(by), dry_run=dry_run)
        if not outcomes:
            self.stdout.write("no refused rows wait: nothing to retry")
            return
        self._table(["ID", "EVENT TYPE", "QUEUE", "OUTCOME", "ERROR"], [
            [o.message.pk, o.message.event_type, o.message.queue, o.result,
             "" if o.result in ("published", "would retry") else clip(o.message.last_error, 80)]
            for o in outcomes
        ], right={0})
        if dry_run:
            self.stdout.write(f"would retry {len(outcomes)} row(s) (dry run: nothing changed)")
            return
        counts = {result: sum(o.result == result for o in outcomes)
                  for result in ("published", "refused again", "still pending")}
        self.stdout.write(", ".join(f"{result} {count}" for result, count in counts.items()))
        if counts["still pending"]:
            raise CommandError("RabbitMQ cannot be reached: the rows stay pending and the relay publishes them "
                               "when it is back")

    def _discard(self, *, ids, reason, dry_run, by, **options):
        rows = outbox_discard(ids=ids, reason=reason, by=self._who(by), dry_run=dry_run)
        self._table(["ID", "EVENT TYPE", "QUEUE", "REFUSALS", "LAST ERROR"], [
            [r.pk, r.event_type, r.queue, r.refusals, clip(r.last_error, 80)] for r in rows
        ], right={0, 3})
        verb = "would discard" if dry_run else "discarded"
        self.stdout.write(f"{verb} {len(rows)} row(s)" + (" (dry run: nothing changed)" if dry_run else ""))

    @staticmethod
    def _who(by: str) -> str:
        if by:
            return by
        try:
            return f"{getpass.getuser()} (manage.py outbox)"
        except Exception:  # no user name in this environment (a container without one)
            return "manage.py outbox"

    def _table(self, header: list[str], rows: list[list], *, right: set[int]) -> None:
        if not rows:
            return
        for line in table(header, rows, right=right):
            self.stdout.write(line)
