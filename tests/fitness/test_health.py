import pytest


def test_healthz_answers_without_touching_dependencies(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_ready_when_postgresql_and_rabbitmq_answer(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    assert response.json()["checks"] == {"postgresql": "ok", "rabbitmq": "ok"}


@pytest.mark.django_db
def test_readyz_names_rabbitmq_when_the_broker_port_is_closed(client, broker_url):
    broker_url("amqp://guest:guest@127.0.0.1:1//")
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["failing"] == ["rabbitmq"]
    assert body["checks"]["postgresql"] == "ok"
    assert body["checks"]["rabbitmq"].startswith("unavailable:")


def test_every_response_carries_a_request_id(client):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="req-123")
    assert response["X-Request-ID"] == "req-123"
    generated = client.get("/healthz", HTTP_X_REQUEST_ID="bad id with spaces")["X-Request-ID"]
    assert generated != "bad id with spaces" and len(generated) == 32


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_probes_and_scrapes_by_pod_ip_are_answered_though_the_host_is_not_allowed(client, settings, path):
    settings.ALLOWED_HOSTS = ["fitness.example.com"]  # as in deploy/kubernetes/config.yaml

    assert client.get(path, HTTP_HOST="10.244.1.17:8000").status_code == 200


def test_every_other_path_keeps_the_host_check(client, settings):
    settings.ALLOWED_HOSTS = ["fitness.example.com"]

    assert client.get("/admin/login/", HTTP_HOST="10.244.1.17:8000").status_code == 400
    assert client.get("/api/v1/tasks/", HTTP_HOST="10.244.1.17:8000").status_code == 400
