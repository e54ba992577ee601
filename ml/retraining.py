"""The retraining pipeline: fine-tune, evaluate on held-out samples, promote or reject.

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

Requesting and reading runs needs no torch; running one imports it (the mlops worker or
the `retrain` command).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Max
from django.utils import timezone

from ml.models import ModelVersion, RetrainingRun, TrainingSample
from ml.training_data import samples_not_yet_used, samples_used_up_to

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]

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
    from ml.jobs import retrain

    try:
        retrain.apply_async()
    except Exception:
        logger.exception("could not send the ml.retrain job; the queued run waits for the next sweep")


def retrain_pending(*, progress: Progress | None = None, wait: bool = False) -> list[RetrainingRun]:
    """Run every queued retraining run, one after the other; returns the finished runs.

    Raises RetrainingBusy when another process holds the runner lock (with `wait`, waits
    for it instead).
    """
    finished: list[RetrainingRun] = []
    with _runner_lock(wait=wait):
        _requeue_interrupted()
        while True:
            run = _start_next()
            if run is None:
                break
            finished.append(_execute(run, progress or (lambda line: None)))
    return finished


@contextmanager
def _runner_lock(*, wait: bool):
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


def _requeue_interrupted() -> None:
    # We hold the runner lock, so a `running` run belongs to a process that died.
    for run in RetrainingRun.objects.filter(status=RetrainingRun.Status.RUNNING):
        if run.attempts >= MAX_ATTEMPTS:
            _finish(run, RetrainingRun.Status.FAILED, f"interrupted {run.attempts} times (the process died)")
        elif RetrainingRun.objects.filter(status=RetrainingRun.Status.QUEUED).exists():
            _finish(run, RetrainingRun.Status.FAILED, "interrupted (the process died); a newer run is queued")
        else:
            RetrainingRun.objects.filter(pk=run.pk).update(status=RetrainingRun.Status.QUEUED)
            logger.warning("retraining run %s was interrupted; starting it again", run.pk)


def _start_next() -> RetrainingRun | None:
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


def _finish(run: RetrainingRun, status: str, reason: str, **fields) -> RetrainingRun:
    run.status = status
    run.reason = reason
    run.finished_at = timezone.now()
    for name, value in fields.items():
        setattr(run, name, value)
    run.save()
    log = logger.warning if status == RetrainingRun.Status.FAILED else logger.info
    log("retraining run %s %s: %s", run.pk, status, reason)
    return run


def _execute(run: RetrainingRun, say: Progress) -> RetrainingRun:
    started = time.perf_counter()
    try:
        return _pipeline(run, say, started)
    except Exception as exc:
        logger.exception("retraining run %s failed", run.pk)
        return _finish(
            run, RetrainingRun.Status.FAILED, f"{exc.__class__.__name__}: {exc}",
            seconds=round(time.perf_counter() - started, 1),
        )


def _pipeline(run: RetrainingRun, say: Progress, started: float) -> RetrainingRun:
    from ml.labels import LABEL_SPACES

    config = RetrainingSettings.from_django()
    baseline = ModelVersion.objects.filter(is_active=True).first()
    if baseline is None:
        return _finish(run, RetrainingRun.Status.SKIPPED, "no active model version to fine-tune: run train_model")
    up_to = TrainingSample.objects.aggregate(up_to=Max("pk"))["up_to"] or 0
    used_before = samples_used_up_to()
    samples = TrainingSample.objects.filter(pk__lte=up_to)
    label_spaces = {head: tuple(labels) for head, labels in baseline.label_spaces.items()}
    if label_spaces != dict(LABEL_SPACES):
        say(f"note: {baseline.version} reads {label_spaces}; samples with other labels are left out")
    fields = dict(
        baseline=baseline,
        samples_up_to=up_to,
        new_samples=samples.filter(pk__gt=used_before).count(),
        train_size=samples.filter(split=TrainingSample.Split.TRAIN).count(),
        holdout_size=samples.filter(split=TrainingSample.Split.HOLDOUT).count(),
    )
    if fields["new_samples"] == 0:
        return _finish(run, RetrainingRun.Status.SKIPPED, "no new samples since the last run", **fields)
    if fields["holdout_size"] < config.min_holdout:
        return _finish(
            run, RetrainingRun.Status.SKIPPED,
            f"only {fields['holdout_size']} held-out sample(s); {config.min_holdout} are needed to judge a candidate "
            "(ML_RETRAIN_MIN_HOLDOUT)", **fields,
        )
    if fields["train_size"] == 0:
        return _finish(run, RetrainingRun.Status.SKIPPED, "no training samples yet (all are held out)", **fields)

    say(
        f"run {run.pk}: fine-tuning {baseline.version} on {fields['train_size']} confirmed samples "
        f"({fields['new_samples']} new), judging on {fields['holdout_size']} held-out samples"
    )
    train_set, skipped_train = _load(samples.filter(split=TrainingSample.Split.TRAIN), baseline, label_spaces)
    holdout_set, skipped_holdout = _load(samples.filter(split=TrainingSample.Split.HOLDOUT), baseline, label_spaces)
    if skipped_train or skipped_holdout:
        say(f"left out {skipped_train + skipped_holdout} sample(s) whose photo or labels cannot be used")
    if len(holdout_set) < config.min_holdout or len(train_set) < 2:
        return _finish(run, RetrainingRun.Status.SKIPPED, "too few usable samples after loading the photos", **fields)
    replay = _replay(baseline, config, run, say)

    from ml.nets import state_dict_from_bytes, state_dict_to_bytes
    from ml.training import evaluate, train

    with baseline.artifact.open("rb") as artifact:
        baseline_state = state_dict_from_bytes(artifact.read())
    baseline_metrics = evaluate(baseline_state, holdout_set, label_spaces=label_spaces, image_size=baseline.image_size)
    say(f"{baseline.version} on the held-out samples: exact match {baseline_metrics['exact_match']:.1%}")
    result = train(
        samples=train_set + replay,
        eval_samples=holdout_set,
        label_spaces=label_spaces,
        epochs=config.epochs,
        image_size=baseline.image_size,
        seed=run.pk,
        init_state_dict=baseline_state,
        learning_rate=config.learning_rate,
        progress=say,
        data_source=f"retraining run {run.pk}: {len(train_set)} confirmed samples + {len(replay)} replayed",
    )
    candidate_metrics = dict(result.metrics)
    promoted = candidate_metrics["exact_match"] >= baseline_metrics["exact_match"]
    comparison = (
        f"held-out exact match {candidate_metrics['exact_match']:.1%} vs {baseline.version}'s "
        f"{baseline_metrics['exact_match']:.1%} on {len(holdout_set)} samples"
    )
    reason = f"at least as good: {comparison}" if promoted else f"worse: {comparison}"
    candidate_metrics["total_seconds"] = round(time.perf_counter() - started, 1)

    from ml.nets import ARCHITECTURE
    from ml.services import model_version_create

    candidate = model_version_create(
        artifact=state_dict_to_bytes(result.state_dict),
        architecture=baseline.architecture or ARCHITECTURE,
        image_size=baseline.image_size,
        label_spaces=label_spaces,
        metrics={**candidate_metrics, "baseline": {"version": baseline.version, **baseline_metrics}},
        activate=promoted,
        notes=f"retraining run {run.pk} ({run.get_trigger_display()})",
        parent=baseline,
        outcome=ModelVersion.Outcome.PROMOTED if promoted else ModelVersion.Outcome.REJECTED,
        outcome_reason=reason,
        activated_by=f"retraining run {run.pk}",
    )
    say(f"{candidate.version} {'promoted' if promoted else 'rejected'}: {reason}")
    return _finish(
        run, RetrainingRun.Status.PROMOTED if promoted else RetrainingRun.Status.REJECTED, reason,
        candidate=candidate, baseline_metrics=baseline_metrics, candidate_metrics=candidate_metrics,
        seconds=round(time.perf_counter() - started, 1), **fields,
    )


def _load(rows, baseline: ModelVersion, label_spaces) -> tuple[list, int]:
    """The samples' photos, decoded and shrunk, with their labels; and how many were left out."""
    from ml.errors import UndecodablePhoto
    from ml.inference import decode_photo

    loaded, skipped = [], 0
    for sample in rows.order_by("pk").iterator(chunk_size=500):
        if any(sample.labels.get(head) not in labels for head, labels in label_spaces.items()):
            skipped += 1
            continue
        try:
            with sample.photo.open("rb") as photo:
                image = decode_photo(photo.read(), min_side=2 * baseline.image_size)
        except (FileNotFoundError, UndecodablePhoto) as exc:
            logger.warning("training sample %s left out: %s", sample.pk, exc)
            skipped += 1
            continue
        image.thumbnail((2 * baseline.image_size, 2 * baseline.image_size))
        loaded.append((image, {head: sample.labels[head] for head in label_spaces}))
    return loaded, skipped


def _replay(baseline: ModelVersion, config: RetrainingSettings, run: RetrainingRun, say: Progress) -> list:
    """Some of the base model's own (synthetic) data, so that fine-tuning does not forget it."""
    source = (baseline.metrics or {}).get("data_source", "")
    root = baseline
    while root.parent_id is not None:  # a fine-tuned version: its root learnt the base data
        root = root.parent
        source = (root.metrics or {}).get("data_source", "")
    if config.replay_per_class < 1 or not source.startswith("synthetic"):
        return []
    from ml.synthetic import generate

    pictures = generate(per_class=config.replay_per_class, image_size=baseline.image_size, seed=10_000 + run.pk)
    say(f"replaying {len(pictures)} synthetic pictures of the base data")
    return pictures
