"""The Django project package: settings, URLs, the Celery app and the queue topology.

Every process imports it first (`gunicorn fitness.wsgi`, `celery -A fitness`, `manage.py` and
the tests through fitness.settings), so the metric files' directory is chosen here, before
anything can import prometheus-client (observability/multiprocess.py).
"""
from observability.multiprocess import configure_multiprocess_dir

configure_multiprocess_dir()

from fitness.celery import app as celery_app  # noqa: E402

__all__ = ("celery_app",)
