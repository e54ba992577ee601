"""Plain Celery jobs of messaging: the retention prune that beat sends every hour.

Routed to the `mlops` queue (`retention.*`, fitness.topology.TASK_ROUTES): the pool for
batch work, never the latency-critical `equipment.fault` one.

Documented in docs/architecture.md (*Consumers*) and docs/operating.md (*Retention*).
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

logger = logging.getLogger(__name__)

PRUNE_TIME_BUDGET = settings.RETENTION_PRUNE_TIME_BUDGET_SECONDS


@shared_task(
    name="retention.prune", acks_late=True, ignore_result=True,
    soft_time_limit=PRUNE_TIME_BUDGET + 60, time_limit=PRUNE_TIME_BUDGET + 90,
)
def prune_tables() -> str:
    """Prune every table past its retention, in batches, for at most the time budget.

    What the budget leaves goes in the next run; running twice at once is harmless (each
    batch skips the rows the other has locked)."""
    from messaging.retention import prune_all

    results = prune_all(time_budget=PRUNE_TIME_BUDGET)
    for result in results:
        logger.info(
            "pruned %s %s rows older than %s in %s batches (%.1f s)%s", result.deleted, result.table,
            result.cutoff.isoformat(timespec="seconds"), result.batches, result.seconds,
            "" if result.finished else "; the time budget ran out, the rest goes next run",
            extra={"table": result.table, "deleted": result.deleted},
        )
    return ", ".join(f"{r.table} {r.deleted}{'' if r.finished else '+'}" for r in results)
