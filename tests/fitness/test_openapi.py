"""The OpenAPI schema is generated from the code without warnings and served with docs."""

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient


def test_the_schema_generates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))


@pytest.mark.django_db
def test_schema_and_docs_are_served_and_describe_the_task_api():
    client = APIClient()
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    post = schema["paths"]["/api/v1/tasks/"]["post"]

    assert set(post["responses"]) >= {"202", "400", "401", "403", "409", "413", "415"}
    assert "multipart/form-data" in post["requestBody"]["content"]
    sign_in = schema["paths"]["/api/v1/auth/token/"]["post"]
    assert set(schema["components"]["schemas"]["IssuedToken"]["properties"]) == {"token", "expiry"}
    assert sign_in["security"] == [{}], "signing in needs no token"
    for logout in ("/api/v1/auth/logout/", "/api/v1/auth/logout-all/"):
        assert schema["paths"][logout]["post"]["security"] == [{"tokenAuth": []}]
    assert schema["components"]["securitySchemes"]["tokenAuth"]["name"] == "Authorization"
    assert "409" in schema["paths"]["/api/v1/devices/"]["post"]["responses"]
    assert client.get("/api/docs/").status_code == 200
