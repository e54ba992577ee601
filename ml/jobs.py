"""Plain Celery jobs of the `mlops` queue (routed by name, `ml.*`; see fitness.topology).

Documented in docs/architecture.md (*Consumers*) and docs/operating.md (*Retraining on confirmed photos*).

They carry no payload: the queued RetrainingRun rows are the requests, so a job that runs
twice, or finds nothing queued, does no harm. Producers send them by name
(`ml.retraining.send_retrain_job` sends "ml.retrain") and import nothing from here.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from ml.models import RetrainingRun
from ml.retraining import RetrainingBusy, retrain_if_due

logger = logging.getLogger(__name__)

# A fine-tuning run takes minutes; RabbitMQ closes a channel whose message stays unacked
# for longer than its consumer_timeout (30 min by default), so the limit stays below it.
RETRAIN_TIME_LIMIT = settings.ML_RETRAIN_TIME_LIMIT


@shared_task(
    name="ml.retrain", acks_late=True, ignore_result=True,
    soft_time_limit=RETRAIN_TIME_LIMIT, time_limit=RETRAIN_TIME_LIMIT + 60,
)
def retrain() -> str:
    """Run the queued retraining runs (if another worker is already running them, leave it)."""
    from ml.retraining_pipeline import retrain_pending  # torch: loaded by the worker that runs a job, once

    try:
        runs = retrain_pending(progress=logger.info)
    except RetrainingBusy as exc:
        logger.info("retraining not started here: %s", exc)
        return "busy"
    return ", ".join(f"run {run.pk} {run.status}" for run in runs) or "nothing queued"


@shared_task(
    name="ml.retrain_scheduled", acks_late=True, ignore_result=True,
    soft_time_limit=RETRAIN_TIME_LIMIT, time_limit=RETRAIN_TIME_LIMIT + 60,
)
def retrain_scheduled() -> str:
    """Celery beat's daily retraining: queue a run when any sample is new, then run it."""
    retrain_if_due(trigger=RetrainingRun.Trigger.SCHEDULE, minimum=1)
    return retrain()
