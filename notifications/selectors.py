from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from notifications.models import Notification


def notification_list_for(*, user: AbstractBaseUser) -> QuerySet[Notification]:
    """The user's own notifications, newest first."""
    return Notification.objects.filter(recipient=user).order_by("-created_at", "-id")


def notification_list_visible_to(*, user: AbstractBaseUser) -> QuerySet[Notification]:
    """Every notification for a superuser; their own for anyone else (owners in the admin)."""
    notifications = Notification.objects.select_related("recipient")
    return notifications if user.is_superuser else notifications.filter(recipient=user)
