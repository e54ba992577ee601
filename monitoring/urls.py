"""The machines' routes, included under /api/v1/ by fitness/api_urls.py."""

from django.urls import path

from monitoring.api import TelemetryView

urlpatterns = [
    path("equipment/telemetry/", TelemetryView.as_view(), name="equipment-telemetry"),
]
