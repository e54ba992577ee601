"""Retraining runs: fine-tune, evaluate on held-out samples, promote or reject.

Documented in docs/operating.md (*Retraining on confirmed photos*).

    request ──▶ RetrainingRun (queued) ──▶ ml.retrain job on `mlops` ──▶ retrain_pending()
      │  enough new samples (ML_RETRAIN_MIN_NEW_SAMPLES), the schedule, `manage.py retrain`
      ▼
    fine-tune the active version on every `train` sample (+ a replay of its synthetic data)
    evaluate candidate and active version on every `holdout` sample (they never train)
    candidate at least as good (exact match) ─▶ stored and activated ("promoted")
    otherwise                                ─▶ stored, not activated ("rejected", with why)

The RetrainingRun row, not the job message, is the request: a request whose job message
is lost (broker down at that moment) is picked up by the next job, including the sweep
that Celery beat sends every few minutes. One run at a time, across every process: the
runner holds a PostgreSQL advisory lock while it trains, and a run that a dead process
left `running` is started again (up to MAX_ATTEMPTS times) by the next runner.

This module keeps the runs' bookkeeping (requesting, the runner lock, the states of a run,
the summary GET /metrics serves) and needs no torch (tests/ml/test_imports.py checks it).
Running a run is `ml.retraining_pipeline.retrain_pending`, which imports torch: only the
mlops worker's `ml.retrain` job and the `retrain` command import it.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count
from django.utils import timezone

from fitness.celery import app as celery_app
from ml.models import RetrainingRun
from ml.training_data import samples_not_yet_used

logger = logging.getLogger(__name__)

# The job that runs the queued runs on the mlops workers (ml.jobs.retrain; routed by name, `ml.*`).
RETRAIN_JOB = "ml.retrain"

# pg_advisory_lock key of the retraining runner ("mlrt")
RUNNER_LOCK_KEY = 0x6D6C7274
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class RetrainingSettings:
    min_new_samples: int  # a run is requested once this many samples are new
    min_holdout: int  # a run needs this many held-out samples to judge a candidate
    epochs: int
    learning_rate: float
    replay_per_class: int  # synthetic pictures per kind mixed in, when the base model learnt from them

    @classmethod
    def from_django(cls) -> RetrainingSettings:
        return cls(
            min_new_samples=settings.ML_RETRAIN_MIN_NEW_SAMPLES,
            min_holdout=settings.ML_RETRAIN_MIN_HOLDOUT,
            epochs=settings.ML_RETRAIN_EPOCHS,
            learning_rate=settings.ML_RETRAIN_LEARNING_RATE,
            replay_per_class=settings.ML_RETRAIN_REPLAY_PER_CLASS,
        )


class RetrainingBusy(RuntimeError):
    """Another process is running a retraining now."""


def retrain_request(*, trigger: str, requested_by: str = "", enqueue: bool = True) -> tuple[RetrainingRun, bool]:
    """Queue a retraining run; (the queued run, False) when one is queued already.

    With `enqueue`, the `ml.retrain` job is sent to the mlops workers once the transaction
    commits; if that send fails the run stays queued for the next job or sweep.
    """
    for _ in range(3):
        queued = RetrainingRun.objects.filter(status=RetrainingRun.Status.QUEUED).first()
        if queued is not None:
            return queued, False
        try:
            with transaction.atomic():
                run = RetrainingRun.objects.create(trigger=trigger, requested_by=requested_by[:200])
        except IntegrityError:
            continue  # a concurrent request queued one first: join it
        if enqueue:
            transaction.on_commit(send_retrain_job)
        logger.info("retraining run %s queued (%s)", run.pk, run.get_trigger_display())
        return run, True
    raise RuntimeError("could not queue a retraining run")


def retrain_if_due(*, trigger: str = RetrainingRun.Trigger.SAMPLES, minimum: int | None = None) -> RetrainingRun | None:
    """Queue a run when at least `minimum` (default ML_RETRAIN_MIN_NEW_SAMPLES) samples are new."""
    wanted = RetrainingSettings.from_django().min_new_samples if minimum is None else minimum
    if RetrainingRun.objects.filter(status=RetrainingRun.Status.QUEUED).exists():
        return None
    new = samples_not_yet_used()
    if new < max(wanted, 1):
        return None
    run, _ = retrain_request(trigger=trigger, requested_by=f"{new} new samples")
    return run


def send_retrain_job() -> None:
    """Send the `ml.retrain` job (declared in ml.jobs) by its name: producer and consumer share only that."""
    try:
        celery_app.send_task(RETRAIN_JOB)
    except Exception:
        logger.exception("could not send the ml.retrain job; the queued run waits for the next sweep")


@contextmanager
def runner_lock(*, wait: bool):
    with connection.cursor() as cursor:
        if wait:
            cursor.execute("SELECT pg_advisory_lock(%s)", [RUNNER_LOCK_KEY])
        else:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [RUNNER_LOCK_KEY])
            if not cursor.fetchone()[0]:
                running = RetrainingRun.objects.filter(status=RetrainingRun.Status.RUNNING).first()
                raise RetrainingBusy(
                    f"another process is running {running or 'a retraining run'}; its result will show in "
                    "`manage.py models`"
                )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [RUNNER_LOCK_KEY])


def runs_requeue_interrupted() -> None:
    # We hold the runner lock, so a `running` run belongs to a process that died.
    for run in RetrainingRun.objects.filter(status=RetrainingRun.Status.RUNNING):
        if run.attempts >= MAX_ATTEMPTS:
            run_finish(run, RetrainingRun.Status.FAILED, f"interrupted {run.attempts} times (the process died)")
        elif RetrainingRun.objects.filter(status=RetrainingRun.Status.QUEUED).exists():
            run_finish(run, RetrainingRun.Status.FAILED, "interrupted (the process died); a newer run is queued")
        else:
            RetrainingRun.objects.filter(pk=run.pk).update(status=RetrainingRun.Status.QUEUED)
            logger.warning("retraining run %s was interrupted; starting it again", run.pk)


def run_start_next() -> RetrainingRun | None:
    with transaction.atomic():
        run = RetrainingRun.objects.select_for_update().filter(status=RetrainingRun.Status.QUEUED).first()
        if run is None:
            return None
        run.status = RetrainingRun.Status.RUNNING
        run.started_at = timezone.now()
        run.attempts += 1
        run.save(update_fields=["status", "started_at", "attempts"])
    return run


def retraining_summary() -> tuple[dict[str, int], str | None]:
    """Runs by status (every status, 0 included) and the status of the last run that finished
    (None before any): GET /metrics serves them as the `fitness_retraining_*` gauges."""
    counts = dict.fromkeys(RetrainingRun.Status.values, 0)
    for status, count in RetrainingRun.objects.values_list("status").annotate(count=Count("pk")).order_by():
        counts[status] = count
    last = (RetrainingRun.objects.filter(status__in=RetrainingRun.FINISHED, finished_at__isnull=False)
            .order_by("-finished_at", "-pk").values_list("status", flat=True).first())
    return counts, last


def run_finish(run: RetrainingRun, status: str, reason: str, **fields) -> RetrainingRun:
    run.status = status
    run.reason = reason
    run.finished_at = timezone.now()
    for name, value in fields.items():
        setattr(run, name, value)
    run.save()
    log = logger.warning if status == RetrainingRun.Status.FAILED else logger.info
    log("retraining run %s %s: %s", run.pk, status, reason)
    return run
