"""Running the queued retraining runs: fine-tune, evaluate on held-out samples, promote or reject.

The torch-heavy half of retraining (see `ml.retraining` for the runs' life and their
bookkeeping, which need no torch). Imported only where a run runs: the mlops worker's
`ml.retrain` job (`ml.jobs`) and `manage.py retrain`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.db.models import Max

from ml.errors import UndecodablePhoto
from ml.inference import decode_photo
from ml.labels import LABEL_SPACES
from ml.models import ModelVersion, RetrainingRun, TrainingSample
from ml.nets import ARCHITECTURE, state_dict_from_bytes, state_dict_to_bytes
from ml.retraining import (
    RetrainingSettings,
    run_finish,
    run_start_next,
    runner_lock,
    runs_requeue_interrupted,
)
from ml.services import model_version_create
from ml.synthetic import generate
from ml.training import evaluate, train
from ml.training_data import samples_used_up_to

logger = logging.getLogger("ml.retraining")  # the runs log under one name

Progress = Callable[[str], None]


def retrain_pending(*, progress: Progress | None = None, wait: bool = False) -> list[RetrainingRun]:
    """Run every queued retraining run, one after the other; returns the finished runs.

    Raises RetrainingBusy when another process holds the runner lock (with `wait`, waits
    for it instead).
    """
    finished: list[RetrainingRun] = []
    with runner_lock(wait=wait):
        runs_requeue_interrupted()
        while True:
            run = run_start_next()
            if run is None:
                break
            finished.append(_execute(run, progress or (lambda line: None)))
    return finished


def _execute(run: RetrainingRun, say: Progress) -> RetrainingRun:
    started = time.perf_counter()
    try:
        return _pipeline(run, say, started)
    except Exception as exc:
        logger.exception("retraining run %s failed", run.pk)
        return run_finish(
            run, RetrainingRun.Status.FAILED, f"{exc.__class__.__name__}: {exc}",
            seconds=round(time.perf_counter() - started, 1),
        )


def _pipeline(run: RetrainingRun, say: Progress, started: float) -> RetrainingRun:
    config = RetrainingSettings.from_django()
    baseline = ModelVersion.objects.filter(is_active=True).first()
    if baseline is None:
        return run_finish(run, RetrainingRun.Status.SKIPPED, "no active model version to fine-tune: run train_model")
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
        return run_finish(run, RetrainingRun.Status.SKIPPED, "no new samples since the last run", **fields)
    if fields["holdout_size"] < config.min_holdout:
        return run_finish(
            run, RetrainingRun.Status.SKIPPED,
            f"only {fields['holdout_size']} held-out sample(s); {config.min_holdout} are needed to judge a candidate "
            "(ML_RETRAIN_MIN_HOLDOUT)", **fields,
        )
    if fields["train_size"] == 0:
        return run_finish(run, RetrainingRun.Status.SKIPPED, "no training samples yet (all are held out)", **fields)

    say(
        f"run {run.pk}: fine-tuning {baseline.version} on {fields['train_size']} confirmed samples "
        f"({fields['new_samples']} new), judging on {fields['holdout_size']} held-out samples"
    )
    train_set, skipped_train = _load(samples.filter(split=TrainingSample.Split.TRAIN), baseline, label_spaces)
    holdout_set, skipped_holdout = _load(samples.filter(split=TrainingSample.Split.HOLDOUT), baseline, label_spaces)
    if skipped_train or skipped_holdout:
        say(f"left out {skipped_train + skipped_holdout} sample(s) whose photo or labels cannot be used")
    if len(holdout_set) < config.min_holdout or len(train_set) < 2:
        return run_finish(
            run, RetrainingRun.Status.SKIPPED, "too few usable samples after loading the photos", **fields
        )
    replay = _replay(baseline, config, run, say)

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
    return run_finish(
        run, RetrainingRun.Status.PROMOTED if promoted else RetrainingRun.Status.REJECTED, reason,
        candidate=candidate, baseline_metrics=baseline_metrics, candidate_metrics=candidate_metrics,
        seconds=round(time.perf_counter() - started, 1), **fields,
    )


def _load(rows, baseline: ModelVersion, label_spaces) -> tuple[list, int]:
    """The samples' photos, decoded and shrunk, with their labels; and how many were left out."""
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
    pictures = generate(per_class=config.replay_per_class, image_size=baseline.image_size, seed=10_000 + run.pk)
    say(f"replaying {len(pictures)} synthetic pictures of the base data")
    return pictures
