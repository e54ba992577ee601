"""The retraining pipeline: fine-tune on confirmed samples, judge on held-out ones, promote or reject.

The tiny test model (32 pixels, one epoch) reads every picture the same way, so the owners'
"corrections" here are a fixed relabelling of what it reads: a candidate that learns them
beats it on held-out samples relabelled the same way (promoted), and a candidate trained on
relabelled samples loses on held-out samples that confirm what the model read (rejected).
"""

import io
import itertools
import uuid

import psycopg2
import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings

from ml.labels import LABEL_SPACES
from ml.models import ModelActivation, ModelVersion, RetrainingRun, TrainingSample
from ml.retraining import RUNNER_LOCK_KEY, RetrainingBusy, retrain_request
from ml.retraining_pipeline import retrain_pending
from tests.ml.conftest import TINY_SIZE
from tests.support import database_url

pytestmark = pytest.mark.django_db

FAST = dict(ML_RETRAIN_EPOCHS=5, ML_RETRAIN_LEARNING_RATE=3e-3, ML_RETRAIN_MIN_HOLDOUT=5,
            ML_RETRAIN_REPLAY_PER_CLASS=0)
_task_ids = itertools.count(1_000_000)  # far from the ids of real tasks


def shifted(labels: dict) -> dict:
    """The next garment and the next condition: a relabelling the model has to learn."""
    return {head: LABEL_SPACES[head][(LABEL_SPACES[head].index(label) + 1) % len(LABEL_SPACES[head])]
            for head, label in labels.items()}


def what_the_model_reads(version: ModelVersion, images) -> list[dict]:
    from ml.inference import Reader

    return [prediction.labels for prediction in Reader(version).read_batch(images)]


def store_samples(images, labels, *, split: str) -> None:
    for image, label in zip(images, labels, strict=True):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        sample = TrainingSample(
            task_id=next(_task_ids), branch_id=1, photo_sha256=uuid.uuid4().hex * 2, labels=label, ai_labels=label,
            corrected=False, source_model_version="v1", split=split, event_id=uuid.uuid4(),
        )
        sample.photo.save("photo.png", ContentFile(buffer.getvalue()), save=False)
        sample.save()


@pytest.fixture(scope="module")
def new_pictures():
    from ml.synthetic import generate

    return [image for image, _ in generate(per_class=3, image_size=TINY_SIZE, seed=99)]  # 45 pictures


def run_now() -> RetrainingRun:
    run, _ = retrain_request(trigger=RetrainingRun.Trigger.COMMAND, enqueue=False)
    (finished,) = retrain_pending()
    assert finished.pk == run.pk
    return finished


@override_settings(**FAST)
def test_a_candidate_that_learns_the_owners_corrections_is_promoted(store_version, new_pictures):
    active = store_version(activate=True)
    corrected = [shifted(labels) for labels in what_the_model_reads(active, new_pictures)]
    store_samples(new_pictures[:30], corrected[:30], split="train")
    store_samples(new_pictures[30:], corrected[30:], split="holdout")

    run = run_now()

    assert run.status == "promoted", run.reason
    candidate = run.candidate
    assert candidate.is_active and candidate.outcome == "promoted" and candidate.parent == active
    assert run.baseline_metrics["exact_match"] == 0.0  # it read every held-out sample "wrong"
    assert run.candidate_metrics["exact_match"] > run.baseline_metrics["exact_match"]
    assert run.candidate_metrics["eval_size"] == run.holdout_size == 15
    assert run.candidate_metrics["train_size"] == run.train_size == 30  # held-out samples never train
    assert run.candidate_metrics["fine_tuned"] is True
    assert "at least as good" in run.reason and active.version in run.reason
    assert ModelActivation.objects.filter(version=candidate, previous=active,
                                          activated_by=f"retraining run {run.pk}").exists()


@override_settings(**FAST)
def test_a_worse_candidate_is_kept_as_rejected_with_the_reason(store_version, new_pictures):
    active = store_version(activate=True)
    read = what_the_model_reads(active, new_pictures)
    store_samples(new_pictures[:30], [shifted(labels) for labels in read[:30]], split="train")  # shuffled labels
    store_samples(new_pictures[30:], read[30:], split="holdout")  # the owners confirmed the readings

    run = run_now()

    assert run.status == "rejected"
    assert run.reason.startswith("worse: held-out exact match")
    assert run.candidate.outcome == "rejected" and not run.candidate.is_active
    assert run.candidate.outcome_reason == run.reason
    assert ModelVersion.objects.get(is_active=True) == active


@override_settings(**FAST)
def test_a_run_is_skipped_until_enough_samples_are_held_out(store_version, new_pictures):
    store_version(activate=True)
    store_samples(new_pictures[:10], [{"garment": "sock", "condition": "torn"}] * 10, split="train")
    store_samples(new_pictures[10:12], [{"garment": "sock", "condition": "torn"}] * 2, split="holdout")

    run = run_now()

    assert run.status == "skipped"
    assert run.reason.startswith("only 2 held-out sample(s); 5 are needed")
    assert run.candidate is None


def test_a_run_without_an_active_model_is_skipped():
    run = run_now()

    assert run.status == "skipped" and "no active model version" in run.reason


def test_a_run_without_new_samples_is_skipped(store_version):
    store_version(activate=True)

    assert run_now().reason == "no new samples since the last run"


def test_requests_join_the_queued_run():
    first, created = retrain_request(trigger="command", enqueue=False)
    second, created_again = retrain_request(trigger="schedule", enqueue=False)

    assert created and not created_again and first.pk == second.pk


def test_a_run_that_a_dead_process_left_running_starts_again():
    RetrainingRun.objects.create(trigger="samples", status="running", attempts=1)

    (run,) = retrain_pending()

    assert run.attempts == 2 and run.status == "skipped"


def test_a_run_interrupted_too_often_fails():
    RetrainingRun.objects.create(trigger="samples", status="running", attempts=3)

    assert retrain_pending() == []
    assert RetrainingRun.objects.get().status == "failed"


def test_only_one_process_retrains_at_a_time():
    retrain_request(trigger="command", enqueue=False)
    other = psycopg2.connect(database_url(connection.settings_dict))
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [RUNNER_LOCK_KEY])
        with pytest.raises(RetrainingBusy, match="another process is running"):
            retrain_pending()
    finally:
        other.close()
    assert RetrainingRun.objects.get().status == "queued"


# --- the commands -------------------------------------------------------------------------

def test_the_retrain_command_runs_now_and_reports_the_outcome(capsys):
    call_command("retrain")

    out = capsys.readouterr().out
    assert "0 new confirmed sample(s) since the last run" in out
    assert "skipped: no active model version to fine-tune" in out


def test_retrain_enqueue_only_queues(capsys, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        call_command("retrain", "--enqueue")

    assert "queued for the worker-mlops pool" in capsys.readouterr().out
    assert RetrainingRun.objects.get().status == "queued"
    assert len(callbacks) == 1


def test_the_retrain_job_is_sent_by_the_name_the_mlops_job_is_declared_with():
    from fitness.celery import app
    from ml.jobs import retrain
    from ml.retraining import RETRAIN_JOB

    assert retrain.name == RETRAIN_JOB
    assert app.amqp.router.route({}, RETRAIN_JOB)["queue"].name == "mlops"


def test_models_lists_promotes_and_rolls_back(store_version, capsys):
    first = store_version(activate=True)
    second = store_version(activate=False)

    call_command("models")
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split()[:3] == ["version", "outcome", "from"]
    assert listing[1].split()[0] == second.version
    assert listing[2].split()[:2] == ["*", first.version]

    call_command("models", "promote", second.version, "--reason", "checked by hand")
    assert ModelVersion.objects.get(is_active=True) == second
    assert ModelActivation.objects.filter(version=second, reason="checked by hand").exists()

    call_command("models", "rollback")
    assert ModelVersion.objects.get(is_active=True) == first
    assert "rolled back: v1 is the active version again" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [(["promote", "v99"], "There is no model version 'v99'"),
     (["rollback"], "nothing to roll back to"),
     (["list", "--limit", "0"], "--limit must be at least 1")],
)
def test_models_refuses_with_one_readable_line(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("models", *args)
