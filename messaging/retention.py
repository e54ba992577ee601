"""Retention: each growing table keeps its rows for a set time, then loses them in small batches.

Each app declares its tables in a `retention.py` module of its own (`register(PruneTarget(…))`),
found by autodiscovery like admin modules, so this module imports no app that it prunes.
`manage.py prune` runs them by hand; Celery beat sends `retention.prune` (messaging/jobs.py)
every RETENTION_PRUNE_INTERVAL_MINUTES.

A batch is one short transaction: it picks at most RETENTION_BATCH_SIZE of the oldest rows
that may go (`SELECT … ORDER BY <time> LIMIT n FOR UPDATE SKIP LOCKED`, through an index on
the time column), deletes their children that the database does not cascade, then the rows
themselves (`DELETE … WHERE id = ANY(…)`). No lock is held longer than one batch, a row a
worker is updating right now is skipped until the next run, and two prunes running at once
share the work instead of waiting on each other.

The settings (fitness/settings.py, "Retention") say how long; messaging/checks.py refuses
combinations that would let a replay re-apply an effect (the dedup window).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.module_loading import autodiscover_modules


@dataclass(frozen=True)
class PruneTarget:
    """One table that is pruned: which of its rows may go once they are older than the cutoff."""

    name: str  # the name `manage.py prune --table` takes
    model: type[models.Model]
    retention_setting: str  # the settings name that holds its retention, in days
    time_field: str  # the (indexed) column the age is measured by; batches go oldest first
    description: str
    # The rows older than the cutoff that may go (e.g. only finished ones); default: all of them.
    prunable: Callable[[QuerySet, datetime], QuerySet] | None = None
    # Children whose foreign key the database does not cascade: (model, the column naming the parent).
    children: tuple[tuple[type[models.Model], str], ...] = ()

    @property
    def retention(self) -> timedelta:
        return timedelta(days=getattr(settings, self.retention_setting))

    def candidates(self, cutoff: datetime) -> QuerySet:
        rows = self.model._default_manager.all()
        if self.prunable is not None:
            return self.prunable(rows, cutoff)
        return rows.filter(**{f"{self.time_field}__lt": cutoff})


_TARGETS: dict[str, PruneTarget] = {}


def register(target: PruneTarget) -> PruneTarget:
    """Declare a table to prune (called by each app's `retention` module)."""
    _TARGETS[target.name] = target
    return target


def prune_targets() -> list[PruneTarget]:
    """Every registered table, in the order they were declared."""
    autodiscover_modules("retention")
    return list(_TARGETS.values())


def prune_target(name: str) -> PruneTarget:
    targets = {target.name: target for target in prune_targets()}
    try:
        return targets[name]
    except KeyError:
        raise LookupError(f"no table named {name!r} is pruned; known: {', '.join(targets)}") from None


@dataclass
class PruneResult:
    table: str
    cutoff: datetime
    deleted: int = 0  # rows of the table itself (what a dry run would delete, for a dry run)
    children_deleted: int = 0
    batches: int = 0
    seconds: float = 0.0
    finished: bool = True  # False: stopped by the time budget, older rows remain for the next run
    dry_run: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return (self.deleted + self.children_deleted) / self.seconds if self.seconds > 0 else 0.0


def prune(
    target: PruneTarget,
    *,
    batch_size: int | None = None,
    dry_run: bool = False,
    deadline: float | None = None,
    now: datetime | None = None,
    progress: Callable[[PruneResult], None] | None = None,
) -> PruneResult:
    """Delete `target`'s rows older than its retention, `batch_size` rows per transaction.

    `deadline` (a time.monotonic() value) stops it between batches; what is left goes in a
    later run. A dry run counts what would go and deletes nothing. `progress` is called after
    every batch.
    """
    batch_size = batch_size or settings.RETENTION_BATCH_SIZE
    cutoff = (now or timezone.now()) - target.retention
    result = PruneResult(table=target.name, cutoff=cutoff, dry_run=dry_run)
    started = time.monotonic()
    if dry_run:
        result.deleted = target.candidates(cutoff).count()
        result.seconds = time.monotonic() - started
        return result
    model = target.model
    quote = connection.ops.quote_name
    while True:
        if deadline is not None and time.monotonic() >= deadline:
            result.finished = False
            break
        with transaction.atomic():
            ids = list(
                target.candidates(cutoff)
                .order_by(target.time_field, "pk")
                .select_for_update(skip_locked=True, of=("self",))
                .values_list("pk", flat=True)[:batch_size]
            )
            if ids:
                with connection.cursor() as cursor:
                    for child, column in target.children:
                        cursor.execute(
                            f"DELETE FROM {quote(child._meta.db_table)} WHERE {quote(column)} = ANY(%s)", [ids]
                        )
                        result.children_deleted += cursor.rowcount
                    cursor.execute(
                        f"DELETE FROM {quote(model._meta.db_table)} WHERE {quote(model._meta.pk.column)} = ANY(%s)",
                        [ids],
                    )
                    result.deleted += cursor.rowcount
        result.seconds = time.monotonic() - started
        if not ids:
            break
        result.batches += 1
        if progress is not None:
            progress(result)
        if len(ids) < batch_size:
            break
    result.seconds = time.monotonic() - started
    return result


def prune_all(
    *,
    tables: list[str] | None = None,
    batch_size: int | None = None,
    dry_run: bool = False,
    time_budget: float | None = None,
    progress: Callable[[PruneResult], None] | None = None,
) -> list[PruneResult]:
    """Prune every registered table (or those named), within `time_budget` seconds in all."""
    targets = [prune_target(name) for name in tables] if tables else prune_targets()
    deadline = time.monotonic() + time_budget if time_budget is not None else None
    now = timezone.now()
    return [
        prune(target, batch_size=batch_size, dry_run=dry_run, deadline=deadline, now=now, progress=progress)
        for target in targets
    ]


# --- messaging's own tables ----------------------------------------------------------------
def _register_messaging_tables() -> None:
    from messaging.models import DeadLetter, EventActivity, OutboxMessage, ProcessedEvent

    register(PruneTarget(
        name="processed-events", model=ProcessedEvent, retention_setting="PROCESSED_EVENT_RETENTION_DAYS",
        time_field="processed_at",
        description="consumers' idempotency records (the dedup window)",
    ))

    def finished_dead_letters(rows: QuerySet, cutoff: datetime) -> QuerySet:
        # Only replayed or purged ones whose last activity is older than the cutoff; a dead
        # letter still waiting in its .dlq keeps its history, however old.
        still_dead = rows.still_dead_lettered().values("pk")
        return rows.filter(
            Q(last_dead_at__lt=cutoff) | Q(last_dead_at__isnull=True, created_at__lt=cutoff),
            Q(replayed_at__isnull=True) | Q(replayed_at__lt=cutoff),
            Q(purged_at__isnull=True) | Q(purged_at__lt=cutoff),
        ).exclude(pk__in=still_dead)

    register(PruneTarget(
        name="dead-letters", model=DeadLetter, retention_setting="DEAD_LETTER_RETENTION_DAYS",
        time_field="last_dead_at", prunable=finished_dead_letters,
        description="history of replayed or purged dead letters",
    ))
    register(PruneTarget(
        name="outbox", model=OutboxMessage, retention_setting="OUTBOX_RETENTION_DAYS",
        time_field="published_at",
        description="published outbox rows (unpublished ones never go)",
    ))
    register(PruneTarget(
        name="event-activities", model=EventActivity, retention_setting="EVENT_ACTIVITY_RETENTION_DAYS",
        time_field="at",
        description="what each subscriber did with each event (the timelines' attempts)",
    ))


_register_messaging_tables()


def replay_refusal(envelope: dict | None, *, now: datetime | None = None) -> str | None:
    """Why a dead letter must not be replayed any more, or None when it may be.

    An event that occurred more than DEAD_LETTER_REPLAY_MAX_AGE_DAYS ago is refused: a
    consumer's record that it handled it (processed at or after it occurred) may be pruned
    soon, and a replay after that would apply its effect again.
    """
    occurred_at = (envelope or {}).get("occurred_at")
    try:
        occurred = parse_datetime(occurred_at) if isinstance(occurred_at, str) else None
    except ValueError:
        occurred = None
    if occurred is None:
        return None
    if timezone.is_naive(occurred):
        occurred = occurred.replace(tzinfo=UTC)
    limit = timedelta(days=settings.DEAD_LETTER_REPLAY_MAX_AGE_DAYS)
    age = (now or timezone.now()) - occurred
    if age <= limit:
        return None
    return (
        f"skipped: occurred {age.days} days ago, beyond the {limit.days}-day replay window "
        f"(DEAD_LETTER_REPLAY_MAX_AGE_DAYS; the dedup window may be pruned); purge it"
    )
