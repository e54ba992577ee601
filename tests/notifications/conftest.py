"""The local FCM server that the real firebase-admin SDK pushes to in these tests."""

from __future__ import annotations

import pytest

from tests.notifications.fcm_server import FcmServer


@pytest.fixture(scope="session")
def fcm_server():
    server = FcmServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fcm_credentials(fcm_server, tmp_path_factory):
    """A service-account JSON whose key the server knows and whose token_uri is the server."""
    return fcm_server.service_account_file(tmp_path_factory.mktemp("fcm"))


@pytest.fixture
def fcm(fcm_server, fcm_credentials, settings):
    """PUSH_BACKEND=fcm against the local server, which starts each test without scripts or sends."""
    settings.PUSH_BACKEND = "fcm"
    settings.FCM_CREDENTIALS_FILE = str(fcm_credentials)
    settings.FCM_ENDPOINT_URL = fcm_server.url
    fcm_server.reset()
    return fcm_server


def fcm_worker_env(fcm_server, fcm_credentials) -> dict[str, str]:
    """The environment that points a worker subprocess's push backend at the local server."""
    return {"PUSH_BACKEND": "fcm", "FCM_CREDENTIALS_FILE": str(fcm_credentials), "FCM_ENDPOINT_URL": fcm_server.url}
