"""The notifications' retention (see messaging/retention.py).

Only finished rows go: a notification whose push is still pending, and a push delivery in a
state that is not final (pending, or any state a later version adds), stay whatever their age.
A notification takes its remaining push deliveries with it (Django cascades them, PostgreSQL
does not, so the prune deletes them first in the same batch).
"""

from datetime import datetime

from django.db.models import QuerySet

from messaging.retention import PruneTarget, register
from notifications.models import Notification, PushDelivery

FINISHED_NOTIFICATIONS = (Notification.Status.SENT, Notification.Status.STORED, Notification.Status.FAILED)
FINISHED_DELIVERIES = (PushDelivery.Status.SENT, PushDelivery.Status.UNREGISTERED, PushDelivery.Status.FAILED)


def _finished_deliveries(rows: QuerySet, cutoff: datetime) -> QuerySet:
    return rows.filter(notification__created_at__lt=cutoff, status__in=FINISHED_DELIVERIES)


def _finished_notifications(rows: QuerySet, cutoff: datetime) -> QuerySet:
    return rows.filter(created_at__lt=cutoff, status__in=FINISHED_NOTIFICATIONS)


register(PruneTarget(
    name="push-deliveries", model=PushDelivery, retention_setting="PUSH_DELIVERY_RETENTION_DAYS",
    time_field="notification__created_at", prunable=_finished_deliveries,
    description="finished push deliveries, by their notification's age",
))
register(PruneTarget(
    name="notifications", model=Notification, retention_setting="NOTIFICATION_RETENTION_DAYS",
    time_field="created_at", prunable=_finished_notifications,
    children=((PushDelivery, "notification_id"),),
    description="finished notifications (the users' inbox), with their push deliveries",
))
