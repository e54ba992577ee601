"""The stack on S3: moto's S3 server, and the Procfile's processes with their storage on it.

One module-scoped stack, in a RabbitMQ vhost of its own (the session's workers keep their
photos on the file system and must not take these messages):

* `manage.py train_model` (a subprocess) trains the tiny model and stores its file in the bucket;
* gunicorn (the Procfile's `web`), the AI worker (`worker-ai`, ML_PRELOAD=1: it loads the
  model from the bucket when it starts), the mlops worker (`worker-mlops`) and the outbox
  relay, each with the bucket's variables in its environment, as a deployment sets them;
* `s3_storage` puts this process's default storage on the same bucket for one test (the
  rows and photos a test makes itself), built by the same settings function.
"""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.test import Client, override_settings

from fitness.settings import s3_storage as s3_storage_settings
from ml.models import ModelVersion
from tests.rabbitmq_node import free_port
from tests.storage.s3_server import S3Server
from tests.support import ROOT, ChildProcess, CommandProcess, WorkerProcess, own_vhost, subprocess_env, wait_for

TINY_SIZE = 32


@dataclass
class S3Stack:
    s3: S3Server
    web_url: str
    web: ChildProcess
    ai_worker: WorkerProcess
    mlops_worker: WorkerProcess
    model_row: dict
    train_output: str

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}: {p.log_path}" for p in (self.web, self.ai_worker, self.mlops_worker))


@pytest.fixture(scope="module")
def s3(log_dir):
    server = S3Server(log_dir)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def s3_stack(s3, django_db_setup, django_db_blocker, log_dir):
    with ExitStack() as stack:
        _STACK_STARTED["at"] = time.time()
        stack.enter_context(own_vhost("s3"))
        trained = subprocess.run(
            [sys.executable, "manage.py", "train_model", "--per-class", "2", "--epochs", "1",
             "--image-size", str(TINY_SIZE), "--activate"],
            cwd=ROOT, env=subprocess_env(**s3.env), capture_output=True, text=True, timeout=600,
        )
        assert trained.returncode == 0, trained.stdout + trained.stderr
        with django_db_blocker.unblock():
            row = ModelVersion.objects.get(is_active=True)  # --activate: this one
            model_row = {f.attname: getattr(row, f.attname) for f in ModelVersion._meta.concrete_fields}

        port = free_port()
        web = ChildProcess(
            [sys.executable, "-m", "gunicorn", "fitness.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2",
             "--graceful-timeout", "30"],
            name="web-s3", log_dir=log_dir, ready="Booting worker", **s3.env,
        )
        stack.callback(web.stop)
        web.start(timeout=300)
        web_url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(f"{web_url}/healthz"), timeout=120, what=f"gunicorn ({web.log_path})")

        ai = WorkerProcess(
            ["task.submitted"], name="s3-ai", concurrency=1, log_dir=log_dir, ML_PRELOAD="1", TORCH_NUM_THREADS="1",
            **s3.env,
        )
        stack.callback(ai.stop)
        ai.start(timeout=300)
        mlops = WorkerProcess(
            ["task.confirmed", "mlops"], name="s3-mlops", concurrency=2, log_dir=log_dir, TORCH_NUM_THREADS="1",
            # the tests queue the retraining run themselves, with few samples
            ML_RETRAIN_MIN_NEW_SAMPLES="100000", ML_RETRAIN_EPOCHS="5", ML_RETRAIN_LEARNING_RATE="0.003",
            ML_RETRAIN_MIN_HOLDOUT="5", ML_RETRAIN_REPLAY_PER_CLASS="0", **s3.env,
        )
        stack.callback(mlops.stop)
        mlops.start(timeout=300)
        # the one publisher of the events that the web commits to the outbox
        relay = CommandProcess("relay_outbox", name="relay-s3", log_dir=log_dir, ready="outbox relay started",
                               **s3.env)
        stack.callback(relay.stop)
        relay.start(timeout=300)
        yield S3Stack(s3=s3, web_url=web_url, web=web, ai_worker=ai, mlops_worker=mlops, model_row=model_row,
                      train_output=trained.stdout)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def active_model(s3_stack):
    """The model train_model stored, as the active version (transactional tests empty the tables)."""
    return ModelVersion.objects.update_or_create(pk=s3_stack.model_row["id"], defaults=s3_stack.model_row)[0]


@pytest.fixture
def s3_storage(s3):
    """This process's default storage on the bucket too, for one test (settings.py's own function)."""
    default = s3_storage_settings(s3.env)
    # the processes take the credentials from their environment; this one is told them here
    default["OPTIONS"] = {**default["OPTIONS"], "access_key": s3.env["AWS_ACCESS_KEY_ID"],
                          "secret_key": s3.env["AWS_SECRET_ACCESS_KEY"]}
    with override_settings(STORAGES={**settings.STORAGES, "default": default}):
        yield s3


_STACK_STARTED = {"at": float("inf")}


def on_disk(name: str) -> bool:
    """Whether the S3 stack wrote `name` under this run's MEDIA_ROOT (it must not, on S3).

    Earlier tests of the run keep their own files there (a `models/v1.pt` of the file system
    included), so only a file written since the stack started counts."""
    path = Path(settings.MEDIA_ROOT) / name
    return path.exists() and path.stat().st_mtime >= _STACK_STARTED["at"]


def session_cookie(user) -> dict[str, str]:
    """The session cookie of a logged-in user, for requests to gunicorn."""
    client = Client()
    client.force_login(user)
    return {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}
