"""The Django project package: settings, URLs, the Celery app and the queue topology."""
from fitness.celery import app as celery_app

__all__ = ("celery_app",)
