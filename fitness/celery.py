"""The one Celery application. Workers run `celery -A fitness worker -Q <queues>`."""

import os

from celery import Celery
from celery.signals import setup_logging, task_prerun

from fitness import topology, worker_probes  # noqa: F401  (worker_probes: signal handlers)
from fitness.logging import configure_celery_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fitness.settings")
# Workers and beat log through Django's LOGGING (JSON lines with correlation_id, event_id,
# task_id…): with a receiver connected, Celery installs no root handler of its own.
setup_logging.connect(configure_celery_logging, weak=False)

app = Celery("fitness")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_queues=topology.celery_queues(),
    task_routes=topology.TASK_ROUTES,
    task_default_exchange=topology.EVENTS_EXCHANGE.name,
    task_default_exchange_type=topology.EVENTS_EXCHANGE.type,
    task_default_queue_type="quorum",
    # There is no default queue: a task without a route fails to publish loudly
    # instead of landing in an auto-created queue named `celery` that nobody consumes.
    task_default_queue="unrouted",
    task_create_missing_queues=False,
)
# Celery's consumer without its DelayedDelivery step (see fitness.worker_consumer).
app.conf.worker_consumer = "fitness.worker_consumer:Consumer"
# Plain jobs live in each app's `jobs` module, event handlers in its `consumers` module.
app.autodiscover_tasks(related_name="jobs")
app.autodiscover_tasks(related_name="consumers")


@task_prerun.connect
def _close_old_connections(**_: object) -> None:
    # As Django does at every request: a connection older than CONN_MAX_AGE or broken by an
    # error is closed (and reopened on use); others are kept (CELERY_DB_REUSE_MAX). Measured
    # in the AI pool: reconnecting per task was ~5% of its CPU samples, plus PostgreSQL's side.
    from django.db import close_old_connections

    close_old_connections()
