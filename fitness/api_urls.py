"""The REST API, version 1 (`/api/v1/`)."""

from django.urls import include, path

from accounts.api import LogoutAllView, LogoutView, TokenObtainView
from fitness.throttling import LOGIN_THROTTLES
from tasks.api import TaskConfirmView, TaskDetailView, TaskListCreateView

app_name = "api-v1"

urlpatterns = [
    path("auth/token/", TokenObtainView.as_view(throttle_classes=LOGIN_THROTTLES), name="auth-token"),
    path("auth/logout/", LogoutView.as_view(), name="auth-logout"),
    path("auth/logout-all/", LogoutAllView.as_view(), name="auth-logout-all"),
    path("tasks/", TaskListCreateView.as_view(), name="task-list"),
    path("tasks/<int:task_id>/", TaskDetailView.as_view(), name="task-detail"),
    path("tasks/<int:task_id>/confirm/", TaskConfirmView.as_view(), name="task-confirm"),
    # by name, not import: the producer side imports nothing from `notifications` (DG-03 in docs/decisions.md)
    path("", include("monitoring.urls")),
    path("", include("notifications.urls")),
]
