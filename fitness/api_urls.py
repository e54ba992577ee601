"""The REST API, version 1 (`/api/v1/`)."""

from django.urls import include, path
from rest_framework.authtoken.views import ObtainAuthToken

from fitness.throttling import LOGIN_THROTTLES
from tasks.api import TaskConfirmView, TaskDetailView, TaskListCreateView

app_name = "api-v1"

urlpatterns = [
    path("auth/token/", ObtainAuthToken.as_view(throttle_classes=LOGIN_THROTTLES), name="auth-token"),
    path("tasks/", TaskListCreateView.as_view(), name="task-list"),
    path("tasks/<int:task_id>/", TaskDetailView.as_view(), name="task-detail"),
    path("tasks/<int:task_id>/confirm/", TaskConfirmView.as_view(), name="task-confirm"),
    # by name, not import: the producer side imports nothing from `notifications` (DG-03)
    path("", include("monitoring.urls")),
    path("", include("notifications.urls")),
]
