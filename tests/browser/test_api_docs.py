"""In a real browser, through gunicorn: Swagger UI and ReDoc render the API from our own static files."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_swagger_ui_and_redoc_render_the_task_api_with_nothing_from_another_host(page):
    page.open("/api/docs/")
    page.wait_until(lambda: page.find_all(".swagger-ui .opblock"), timeout=60)
    assert "/api/v1/tasks/" in page.text
    requested = page.assert_nothing_from_another_host()
    assert any("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle." in url for url in requested)

    page.open("/api/redoc/")
    page.wait_until(lambda: "/api/v1/tasks/" in page.text, timeout=60)
    requested = page.assert_nothing_from_another_host()
    assert any("/static/drf_spectacular_sidecar/redoc/bundles/redoc.standalone." in url for url in requested)
