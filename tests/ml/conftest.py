"""Fixtures of the ml tests: tiny synthetic data sets and a tiny trained model.

Training is kept tiny (32-pixel pictures, two per kind, one epoch: a second or two) since
these tests check the plumbing, not the accuracy; `train_model`'s defaults are measured
separately (see docs/operating.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from django.conf import settings

from ml.labels import LABEL_SPACES

TINY_SIZE = 32
RETRAIN_THRESHOLD = 40  # new samples that make the test mlops worker queue a retraining run


@pytest.fixture(scope="session")
def tiny_samples():
    from ml.synthetic import generate

    return generate(per_class=2, image_size=TINY_SIZE, seed=7)


@pytest.fixture(scope="session")
def tiny_training(tiny_samples):
    """A model trained for one epoch on 32-pixel pictures (a TrainingResult)."""
    from ml.training import train

    return train(samples=tiny_samples, label_spaces=LABEL_SPACES, epochs=1, image_size=TINY_SIZE, seed=0)


@pytest.fixture
def store_version(tiny_training):
    """Store the tiny model as the next ModelVersion: store_version(activate=True, ...)."""
    from ml.nets import ARCHITECTURE, state_dict_to_bytes
    from ml.services import model_version_create

    artifact = state_dict_to_bytes(tiny_training.state_dict)

    def store(*, activate: bool = True, **overrides):
        fields = dict(
            artifact=artifact, architecture=ARCHITECTURE, image_size=TINY_SIZE, label_spaces=LABEL_SPACES,
            metrics=tiny_training.metrics, activate=activate,
        )
        fields.update(overrides)
        return model_version_create(**fields)

    return store


@pytest.fixture
def stored_artifacts():
    """The names of the model files in storage now: stored_artifacts() -> set of paths."""

    def names() -> set[str]:
        folder = Path(settings.MEDIA_ROOT) / "models"
        return {str(path) for path in folder.rglob("*")} if folder.exists() else set()

    return names


@pytest.fixture(autouse=True)
def fresh_reader():
    """Every test starts without a loaded model (active_reader keeps one per process)."""
    _reset_reader()
    yield
    _reset_reader()


def _reset_reader() -> None:
    inference = sys.modules.get("ml.inference")
    if inference is not None:
        inference.reset_active_reader()


@pytest.fixture(scope="session")
def mlops_worker(django_db_setup, django_db_blocker, broker_vhost, log_dir):
    """A real worker of the worker-mlops pool: `task.confirmed` and `mlops`, two processes.

    Its retraining settings suit the tiny test model (see test_retraining.py); a run is
    queued automatically at RETRAIN_THRESHOLD new samples.
    """
    from tests.support import WorkerProcess

    worker = WorkerProcess(
        ["task.confirmed", "mlops"], name="mlops", concurrency=2, log_dir=log_dir, TORCH_NUM_THREADS="1",
        ML_RETRAIN_MIN_NEW_SAMPLES=str(RETRAIN_THRESHOLD), ML_RETRAIN_EPOCHS="5", ML_RETRAIN_LEARNING_RATE="0.003",
        ML_RETRAIN_MIN_HOLDOUT="5", ML_RETRAIN_REPLAY_PER_CLASS="0",
    ).start()
    yield worker
    worker.stop()
