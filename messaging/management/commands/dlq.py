import argparse
import json
import re
import sys
import uuid
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from fitness import topology
from fitness.formatting import clip, table, when
from messaging.dead_letters.messages import DeadLetterMessage
from messaging.dead_letters.operations import NOT_AN_ENVELOPE, OperationReport, dead_letters_purge, dead_letters_replay
from messaging.dead_letters.selection import Selection, dead_letter_summaries, dead_letters_browse
from messaging.errors import BrokerUnavailable

MAX_ROWS = 200
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def duration(text: str) -> timedelta:
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected a number and a unit (s, m, h, d, w), e.g. 30m or 7d: {text!r}")
    return timedelta(**{_UNITS[match[2]]: float(match[1])})


def work_queue_name(text: str) -> str:
    name = text.removesuffix(topology.DEAD_LETTER_SUFFIX)
    if name not in topology.queue_names():
        raise argparse.ArgumentTypeError(f"no work queue {text!r}; known: {', '.join(topology.queue_names())}")
    return name


def event_id(text: str) -> str:
    try:
        return str(uuid.UUID(text.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an event id (a UUID): {text!r}") from None


class Command(BaseCommand):
    help = (
        "Inspect and operate the dead-letter queues (<queue>.dlq): list them, show their "
        "messages with why they died, replay them to their work queues, or purge them. "
        "Replay publishes each message again with its retry count reset and removes it from "
        "the .dlq only once RabbitMQ has confirmed the new copy; consumers skip an event they "
        "already processed, so replaying is always safe. list and show read the history the "
        "dead-letters archiver keeps in PostgreSQL (admin: Messaging > Dead letters) and never "
        "take a message out of its queue, so browsing counts as no delivery; replay and purge "
        "choose in that history and take exactly those messages from the .dlq. A message that "
        "is not an event envelope is shown as it is and cannot be replayed (purge it). Run "
        "`manage.py dlq <subcommand> --help` for each."
    )

    def add_arguments(self, parser):
        commands = parser.add_subparsers(dest="subcommand", metavar="{list,show,replay,purge}", required=True)

        def filters(sub, *, ids_help: str):
            sub.add_argument("--queue", action="append", type=work_queue_name, default=[], metavar="QUEUE",
                             help="Only this work queue (or its .dlq); may be repeated.")
            sub.add_argument("--event-type", action="append", default=[], metavar="TYPE",
                             help="Only events of this type, e.g. TaskSubmittedEvent; may be repeated.")
            sub.add_argument("--event-id", nargs="+", action="extend", type=event_id, default=[], metavar="ID",
                             help=ids_help)

        listing = commands.add_parser(
            "list", help="Per dead-letter queue: how many messages wait, the oldest and the newest.",
            description=(
                "Per dead-letter queue: how many messages RabbitMQ holds in it (MESSAGES), how many the "
                "history records as waiting there (RECORDED), and when the oldest and newest died. "
                "The two counts differ while the dead-letters archiver is behind or not running."
            ),
        )
        listing.add_argument("--queue", action="append", type=work_queue_name, default=[], metavar="QUEUE",
                             help="Only this work queue (or its .dlq); may be repeated.")

        show = commands.add_parser(
            "show", help="The dead letters: event, reason, attempts, first and last failure, error.",
            description=(
                "Show dead letters from their history (never touching the queues): the event type and id, "
                "RabbitMQ's death reason (rejected: the consumer gave up; delivery_limit: its "
                "workers kept dying), the attempts, the first and last failure (to the second) and "
                "the error the consumer recorded. With --full (or one --event-id), every field and "
                "the event envelope, or the raw body of a message that is not an envelope."
            ),
        )
        filters(show, ids_help="Only these events.")
        show.add_argument("--limit", type=int, default=MAX_ROWS, help="Show at most this many (default %(default)s).")
        show.add_argument("--full", action="store_true", help="Every field and the envelope, one block each.")

        replay = commands.add_parser(
            "replay", help="Publish dead letters to their work queues again (by id, queue, type, or --all).",
            description=(
                "Publish the selected dead letters to their work queues again, through the events "
                "exchange with publisher confirms, with the retry count reset. Each leaves its .dlq "
                "only after RabbitMQ confirmed the new copy, so an interrupted replay loses nothing; "
                "consumers skip events they already processed, so it duplicates nothing. Say what to "
                "replay: --event-id, --queue and/or --event-type (all must match), or --all. A message "
                "that is not an event envelope is left in its .dlq and reported (exit status 1)."
            ),
        )
        filters(replay, ids_help="Replay these events.")
        replay.add_argument("--all", action="store_true", help="Replay every dead letter of every queue.")
        replay.add_argument("--dry-run", action="store_true", help="Show what would be replayed; change nothing.")
        replay.add_argument("--limit", type=int, help="Replay at most this many.")
        replay.add_argument("--by", default="", help="Who replays (recorded in the history; default: $USER).")

        purge = commands.add_parser(
            "purge", help="Delete dead letters from their queues (asks first unless --yes).",
            description=(
                "Delete the selected dead letters from their .dlq for good (their history stays in "
                "PostgreSQL). Shows what it would delete and asks for confirmation unless --yes; "
                "deletes exactly what it showed. Say what to purge: --queue, --event-type, "
                "--event-id and/or --older-than (all must match), or --all."
            ),
        )
        filters(purge, ids_help="Purge these events.")
        purge.add_argument("--older-than", type=duration, metavar="AGE",
                           help="Only dead letters that died at least this long ago: 90s, 30m, 12h, 7d, 2w.")
        purge.add_argument("--all", action="store_true", help="Purge every dead letter of every queue.")
        purge.add_argument("--yes", action="store_true", help="Do not ask for confirmation.")
        purge.add_argument("--dry-run", action="store_true", help="Show what would be purged; change nothing.")
        purge.add_argument("--by", default="", help="Who purges (recorded in the history; default: $USER).")

    def handle(self, *args, subcommand: str, **options):
        try:
            return getattr(self, f"_{subcommand}")(**options)
        except BrokerUnavailable as exc:
            raise CommandError(str(exc)) from exc

    # --- subcommands ------------------------------------------------------------------------
    def _list(self, *, queue, **options):
        summaries = dead_letter_summaries(selection=Selection(queues=tuple(queue)))
        self._table(
            ["QUEUE", "MESSAGES", "RECORDED", "OLDEST DIED", "NEWEST DIED"],
            [[s.queue, s.count, s.recorded, when(s.oldest), when(s.newest)] for s in summaries],
            right={1, 2},
        )
        self.stdout.write(f"{sum(s.count for s in summaries)} dead letter(s) in {len(summaries)} queue(s) (times UTC)")
        behind = [s.queue for s in summaries if s.count != s.recorded]
        if behind:
            self.stdout.write(
                f"MESSAGES (RabbitMQ's count) and RECORDED (the history, which show/replay/purge work from) differ "
                f"for {', '.join(behind)}: the dead-letters archiver is behind or not running, or messages were "
                f"removed from the queue by other means"
            )

    def _show(self, *, queue, event_type, event_id, limit, full, **options):
        if limit < 1:
            raise CommandError("--limit must be at least 1")
        selection = Selection(queues=tuple(queue), event_types=frozenset(event_type), event_ids=frozenset(event_id))
        messages = dead_letters_browse(selection=selection, limit=limit)
        if full or len(event_id) == 1:
            for message in messages:
                self._detail(message)
        else:
            self._messages_table(messages)
        self.stdout.write(f"{len(messages)} dead letter(s) shown" + (f" (--limit {limit})" if len(messages) >= limit
                                                                       else ""))
        missing = set(event_id) - {m.event_id for m in messages}
        if missing:
            raise CommandError(f"not in any dead-letter queue: {', '.join(sorted(missing))}")

    def _replay(self, *, queue, event_type, event_id, all, dry_run, limit, by, **options):
        selection = self._selection(queue, event_type, event_id, all, verb="replay")
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1")
        report = dead_letters_replay(selection=selection, dry_run=dry_run, replayed_by=self._who(by), limit=limit)
        self._report(report, done="replayed", planned="would replay", dry_run=dry_run)

    def _purge(self, *, queue, event_type, event_id, older_than, all, yes, dry_run, by, **options):
        selection = self._selection(queue, event_type, event_id, all, verb="purge", older_than=older_than)
        preview = dead_letters_purge(selection=selection, dry_run=True)
        if dry_run or not preview.outcomes:
            return self._report(preview, done="purged", planned="would purge", dry_run=True)
        self._messages_table([o.message for o in preview.outcomes])
        if not yes:
            if not sys.stdin.isatty():
                raise CommandError("not confirmed: stdin is not a terminal; pass --yes to purge without asking")
            answer = input(f"Purge these {len(preview.outcomes)} dead letter(s) for good? [y/N] ").strip().lower()
            if answer not in ("y", "yes"):
                self.stdout.write("nothing purged")
                return
        exactly = Selection(
            queues=selection.queues, only=frozenset((o.message.queue, o.message.event_id) for o in preview.outcomes)
        )
        report = dead_letters_purge(selection=exactly, purged_by=self._who(by))
        self._report(report, done="purged", planned="would purge", dry_run=False, table=False)

    # --- helpers ----------------------------------------------------------------------------
    def _selection(self, queue, event_type, event_id, everything, *, verb, older_than=None) -> Selection:
        filtered = bool(queue or event_type or event_id or older_than)
        if everything and filtered:
            raise CommandError(f"--all {verb}s every dead letter: leave it out to {verb} by id, queue, type or age")
        if not everything and not filtered:
            criteria = "--event-id, --queue, --event-type" + (", --older-than" if verb == "purge" else "")
            raise CommandError(f"say what to {verb}: {criteria}, or --all")
        return Selection(
            queues=tuple(queue), event_types=frozenset(event_type), event_ids=frozenset(event_id),
            older_than=older_than,
        )

    @staticmethod
    def _who(by: str) -> str:
        import getpass

        if by:
            return by
        try:
            return f"{getpass.getuser()} (manage.py dlq)"
        except Exception:
            return "manage.py dlq"

    def _report(self, report: OperationReport, *, done: str, planned: str, dry_run: bool, table: bool = True):
        if table and report.outcomes:
            self._table(
                ["ACTION", "QUEUE", "EVENT TYPE", "EVENT ID", "REASON", "TRIES"],
                [[o.action, o.message.queue, o.message.event_type, o.message.event_id, o.message.reason,
                  o.message.attempts] for o in report.outcomes],
                right={5},
            )
        verb = planned if dry_run else done
        summary = f"{verb} {report.count(verb)} dead letter(s)"
        unreplayable = [o.message.event_id for o in report.outcomes if o.action == NOT_AN_ENVELOPE]
        if report.skipped:
            summary += f", skipped {report.skipped}"
        for action in ("duplicate dropped", "would drop (duplicate)"):
            if report.count(action):
                summary += f", {report.count(action)} duplicate copy(ies) {'dropped' if not dry_run else 'to drop'}"
        if not report.outcomes:
            summary = "no dead letters match"
        self.stdout.write(summary + (" (dry run: nothing changed)" if dry_run else ""))
        problems = []
        if unreplayable:
            problems.append(
                f"not replayed: {len(unreplayable)} dead letter(s) are not an event envelope, so there is no event "
                f"to publish ({', '.join(unreplayable[:5])}{' …' if len(unreplayable) > 5 else ''}); look at them "
                f"with `dlq show --event-id ID` and purge them"
            )
        if report.not_found:
            problems.append(f"not in any dead-letter queue: {', '.join(report.not_found)}")
        if report.error:
            problems.append(f"stopped early, the rest stays in the dead-letter queue: {report.error}")
        if problems:
            raise CommandError("; ".join(problems))

    def _messages_table(self, messages: list[DeadLetterMessage]) -> None:
        rows = []
        for m in messages:
            record = m.record
            first = [t for t in (m.first_failed_at, record and record.first_dead_at) if t]
            last = [t for t in (m.dead_at, record and record.failed_at, record and record.last_dead_at) if t]
            rows.append([
                m.queue, m.event_type or "?", m.event_id or "?", m.reason, m.attempts,
                record.deaths if record and record.deaths else m.deaths,
                when(min(first) if first else None), when(max(last) if last else None), clip(m.error or "-", 60),
            ])
        self._table(
            ["QUEUE", "EVENT TYPE", "EVENT ID", "REASON", "TRIES", "DEATHS", "FIRST FAILURE", "LAST FAILURE",
             "ERROR"],
            rows, right={4, 5},
        )

    def _detail(self, message: DeadLetterMessage) -> None:
        record = message.record
        fields = [
            ("queue", f"{message.queue} (dead letter in {message.queue}{topology.DEAD_LETTER_SUFFIX})"),
            ("event type", message.event_type or "?"),
            ("event id", message.event_id or "?"),
            ("reason", message.reason),
            ("attempts", message.attempts),
            ("dead-lettered", f"{when(message.dead_at)} UTC"),
            ("first failure", f"{when(message.first_failed_at)} UTC"),
            ("replayed before", message.replays),
        ]
        if record:
            fields += [
                ("consumer", record.consumer or "-"),
                ("deaths (history)", record.deaths),
                ("first seen dead", f"{when(record.first_dead_at)} UTC"),
                ("replays (history)", f"{record.replays}, the last {when(record.replayed_at)} UTC by "
                 f"{record.replayed_by or '-'}" if record.replays else "0"),
            ]
        fields.append(("error", message.error or "- (no consumer recorded one; see the worker log)"))
        if not message.replayable:
            fields.append(("replayable", "no: not an event envelope (no event to publish); purge it once understood"))
            fields.append(("content type", message.content_type or "-"))
        width = max(len(name) for name, _ in fields)
        self.stdout.write("")
        for name, value in fields:
            self.stdout.write(f"{name:<{width}}  {value}")
        if message.envelope is not None:
            self.stdout.write(f"{'envelope':<{width}}")
            self.stdout.write("  " + json.dumps(message.envelope, indent=2, default=str).replace("\n", "\n  "))
            return
        raw = message.raw_body
        try:
            text = raw.decode("utf-8") if raw is not None else None
        except UnicodeDecodeError:  # not text: its bytes, as Python writes them
            self.stdout.write(f"{'body':<{width}}  ({len(raw)} bytes, not UTF-8)")
            self.stdout.write(f"  {raw!r}")
            return
        body = message.body if text is None or isinstance(message.body, dict | list) else text
        self.stdout.write(f"{'body':<{width}}  (as dead-lettered{f', {len(raw)} bytes' if raw is not None else ''})")
        shown = body if isinstance(body, str) else json.dumps(body, indent=2, default=str)
        self.stdout.write("  " + shown.replace("\n", "\n  "))

    def _table(self, header: list[str], rows: list[list], *, right: set[int] = frozenset()) -> None:
        for line in table(header, rows[:MAX_ROWS], right=right, rule=True):
            self.stdout.write(line)
        if len(rows) > MAX_ROWS:
            self.stdout.write(f"… and {len(rows) - MAX_ROWS} more")
