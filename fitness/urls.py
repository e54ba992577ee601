from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from fitness import health
from fitness.api_docs import RedocView, SwaggerView
from fitness.operations import operations_view
from observability.views import metrics_view

# Django's RequestDataTooBig (a body read past DATA_UPLOAD_MAX_MEMORY_SIZE) is a JSON 413 naming the limit
handler400 = "fitness.request_limits.bad_request"

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("api/v1/", include("fitness.api_urls", namespace="api-v1")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", RedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("admin/operations/", admin.site.admin_view(operations_view), name="admin-operations"),
    path("admin/", admin.site.urls),
]
