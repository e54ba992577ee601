import socket
import threading

import pytest

from tests.observability.scrape import closed_port


def test_healthz_answers_without_touching_dependencies(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_ready_when_postgresql_and_rabbitmq_answer(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    assert response.json()["checks"] == {"postgresql": "ok", "rabbitmq": "ok"}
    assert response.json()["failing"] == []


@pytest.mark.django_db
def test_readyz_stays_ready_and_reports_rabbitmq_down_when_the_broker_port_is_closed(client, broker_url):
    broker_url(f"amqp://guest:guest@127.0.0.1:{closed_port()}//")
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ready"
    assert body["failing"] == []
    assert body["degraded"] == ["rabbitmq"]
    assert body["checks"]["postgresql"] == "ok"
    assert body["checks"]["rabbitmq"].startswith("unreachable:"), body


@pytest.mark.django_db
def test_a_hung_broker_is_asked_once_per_cache_period_with_a_short_timeout(client, broker_url, settings):
    """A listener that accepts connections and never speaks AMQP: a hung broker."""
    settings.BROKER_CHECK_TIMEOUT_SECONDS = 0.5
    settings.BROKER_CHECK_CACHE_SECONDS = 300
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        broker_url(f"amqp://guest:guest@127.0.0.1:{listener.getsockname()[1]}//")
        accepted = []
        stop = threading.Event()

        def accept():
            listener.settimeout(0.1)
            while not stop.is_set():
                try:
                    accepted.append(listener.accept()[0])
                except TimeoutError:
                    continue

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            bodies = [client.get("/readyz").json() for _ in range(5)]
        finally:
            stop.set()
            thread.join(timeout=5)
            for conn in accepted:
                conn.close()

    assert all(body["status"] == "ready" for body in bodies), bodies
    assert all(body["checks"]["rabbitmq"].startswith("unreachable:") for body in bodies), bodies
    assert len(accepted) == 1, "the broker's state is cached, not asked again by every probe"


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
