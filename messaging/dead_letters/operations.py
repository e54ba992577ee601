"""Replay and purge: dead letters chosen in the history, taken from their `.dlq`.

See `messaging.dead_letters` (replaying: published again, acknowledged in the `.dlq` only
after RabbitMQ confirmed the new copy). `manage.py dlq` and the admin call these.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from messaging.broker import publish_envelope
from messaging.dead_letters.messages import REPLAY_HEADER, DeadLetterMessage, row_defaults
from messaging.dead_letters.selection import Selection, dead_letters_browse, join_records
from messaging.dead_letters.sweep import Decision, take
from messaging.errors import BrokerUnavailable
from messaging.models import DeadLetter
from messaging.retention import replay_refusal
from observability import metrics

logger = logging.getLogger("messaging.dead_letters")


@dataclass
class Outcome:
    message: DeadLetterMessage
    action: str  # replayed, would replay, duplicate dropped, skipped: why


@dataclass
class OperationReport:
    outcomes: list[Outcome] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)  # event ids asked for but not in a .dlq
    error: str = ""  # why it stopped early; what was not done is still in the .dlq

    def count(self, action: str) -> int:
        return sum(1 for outcome in self.outcomes if outcome.action == action)

    @property
    def skipped(self) -> int:
        return sum(1 for outcome in self.outcomes if outcome.action.startswith("skipped"))


NOT_AN_ENVELOPE = "skipped: not an event envelope, nothing to publish (see `dlq show`, then purge it)"


def _copies_waiting(message: DeadLetterMessage) -> int:
    row = message.record
    return max(1, row.deaths - row.replays - row.purges) if row else 1


def _operate(selection: Selection, wanted: list[DeadLetterMessage], decide: Decision, report: OperationReport
             ) -> None:
    """Take each of `wanted` (chosen in the history) from its `.dlq` and let `decide` handle it."""
    found: set = set()
    try:
        for work_queue in selection.work_queues():
            mine = {m.key: _copies_waiting(m) for m in wanted if m.queue == work_queue.name}
            if mine:
                found |= take(work_queue, mine, decide)
    except BrokerUnavailable as exc:
        report.error = str(exc)
    if not report.error:
        # recorded as waiting, but no longer in its .dlq (removed by other means than `dlq`)
        report.not_found += [m.event_id for m in wanted if m.key not in found]


def _not_asked_for(selection: Selection, report: OperationReport, chosen: list[DeadLetterMessage]) -> None:
    report.not_found = sorted(set(report.not_found) | (selection.event_ids - {m.event_id for m in chosen}))


def dead_letters_replay(
    *, selection: Selection, dry_run: bool = False, replayed_by: str = "", limit: int | None = None
) -> OperationReport:
    """Publish the selected dead letters to their work queues again, each exactly once.

    The dead letters are chosen in the history (what `dlq show` shows), then taken from
    their `.dlq`: a message is acknowledged there only after RabbitMQ confirmed the new
    copy. A second copy of an event already replayed in this run is dropped (it is the same
    event). A body that is not an event envelope cannot be replayed: it is not touched, and
    reported as skipped. If RabbitMQ refuses a publish, the replay stops there and says so
    in `error`.
    """
    report = OperationReport()
    chosen = dead_letters_browse(selection=selection, limit=limit if limit is not None else 1_000_000)
    replayable = []
    now = timezone.now()
    for message in chosen:
        if not message.replayable:
            report.outcomes.append(Outcome(message, NOT_AN_ENVELOPE))
        elif too_old := replay_refusal(message.envelope, now=now):  # its dedup record may be pruned
            report.outcomes.append(Outcome(message, too_old))
        else:
            replayable.append(message)
    if dry_run:
        report.outcomes += [Outcome(message, "would replay") for message in replayable]
        _not_asked_for(selection, report, chosen)
        return report
    replayed: set[tuple[str, str]] = set()

    def replay(message: DeadLetterMessage) -> bool:
        if message.key in replayed:
            report.outcomes.append(Outcome(message, "duplicate dropped"))
            return True
        if message.envelope is None:  # the history said it was an envelope; the queue's copy is not
            report.outcomes.append(Outcome(message, NOT_AN_ENVELOPE))
            return False
        replayed.add(message.key)
        publish_envelope(message.queue, message.envelope, headers={REPLAY_HEADER: message.replays + 1})
        metrics.event_published(message.event_type or "unknown", via="replay")
        report.outcomes.append(Outcome(message, "replayed"))
        return True  # acknowledged only now: RabbitMQ has confirmed the new copy

    return _carry_out(selection, report, chosen=chosen, wanted=replayable, decide=replay, done="replayed",
                      by={"replayed_by": replayed_by or "unknown"})


def dead_letters_purge(*, selection: Selection, dry_run: bool = False, purged_by: str = "") -> OperationReport:
    """Delete the selected dead letters from their `.dlq`s; their history stays in PostgreSQL.

    Chosen in the history like a replay; a dry run touches no queue.
    """
    report = OperationReport()
    chosen = dead_letters_browse(selection=selection, limit=1_000_000)
    if dry_run:
        report.outcomes = [Outcome(message, "would purge") for message in chosen]
        _not_asked_for(selection, report, chosen)
        return report

    def purge(message: DeadLetterMessage) -> bool:
        report.outcomes.append(Outcome(message, "purged"))
        return True

    return _carry_out(selection, report, chosen=chosen, wanted=chosen, decide=purge, done="purged",
                      by={"purged_by": purged_by or "unknown"})


def _carry_out(selection: Selection, report: OperationReport, *, chosen: list[DeadLetterMessage],
               wanted: list[DeadLetterMessage], decide: Decision, done: str, by: dict[str, str]) -> OperationReport:
    """The common tail of a replay and a purge.

    Takes `wanted` from their `.dlq`s (each goes to `decide`), notes every outcome `done` in
    the history (`by` says who), names the event ids asked for and not found, and joins the
    history rows to the report.
    """
    _operate(selection, wanted, decide, report)
    for outcome in report.outcomes:
        if outcome.action == done:
            _record_outcome(outcome.message, **by)
    _not_asked_for(selection, report, chosen)
    join_records([o.message for o in report.outcomes])
    return report


def _record_outcome(message: DeadLetterMessage, *, replayed_by: str = "", purged_by: str = "") -> None:
    """Note a replay or purge in the history (creating the row if the archiver has not yet)."""
    if not message.event_id:
        return
    try:
        with transaction.atomic():
            row, _ = DeadLetter.objects.select_for_update().get_or_create(
                queue=message.queue, event_id=message.event_id, defaults=row_defaults(message)
            )
            now = timezone.now()
            if replayed_by:
                row.replays = F("replays") + 1
                row.replayed_at, row.replayed_by = now, replayed_by[:150]
            if purged_by:
                row.purges = F("purges") + 1
                row.purged_at, row.purged_by = now, purged_by[:150]
            row.save()
    except Exception:  # the broker side is done; a missing history line must not undo it
        logger.exception("could not record the %s of %s %s", "replay" if replayed_by else "purge",
                         message.event_type, message.event_id)

