"""The apps' notification routes, included under /api/v1/ by fitness/api_urls.py."""

from django.urls import path

from notifications.api import DeviceView, NotificationListView

urlpatterns = [
    path("devices/", DeviceView.as_view(), name="devices"),
    path("notifications/", NotificationListView.as_view(), name="notification-list"),
]
