"""DJANGO_ENV=production (fitness/settings.py): the process refuses to start without a secret key and
allowed hosts, with one line that says so; `check --deploy` then prints no warning; behind the TLS
ingress the site builds https URLs, redirects http, sends HSTS and secure cookies, and the admin's
POSTs pass the origin check; /metrics is closed until a token is configured.

The settings are read at start, so each case is a process of its own with the environment set:
`manage.py check` for the refusals, the Procfile's web process (gunicorn) for the behaviour.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client, override_settings

from tests import factories
from tests.support import ROOT, WebProcess, procfile_command, subprocess_env

STRONG_KEY = secrets.token_urlsafe(50)
PRODUCTION = {"DJANGO_ENV": "production", "DJANGO_SECRET_KEY": STRONG_KEY,
              "DJANGO_ALLOWED_HOSTS": "fitness.example.com", "DJANGO_DEBUG": None, "METRICS_TOKEN": None}


def manage(*args: str, **env: str | None) -> subprocess.CompletedProcess:
    """`manage.py <args>` with the product's settings (not the tests') and `env` (None: unset)."""
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=180,
        env=subprocess_env(DJANGO_SETTINGS_MODULE="fitness.settings", LOG_LEVEL="WARNING", **env),
    )


def refusal(result: subprocess.CompletedProcess) -> str:
    """The one line a refused start ends with."""
    assert result.returncode != 0, result.stdout
    return result.stderr.strip().splitlines()[-1]


def test_under_production_check_deploy_prints_no_warning():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "System check identified no issues (0 silenced)."
    assert "WARNING" not in result.stderr and "security." not in result.stderr


def test_in_development_check_deploy_flags_the_public_key_and_the_missing_https_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING",
                    DJANGO_ENV=None, DJANGO_SECRET_KEY=None, DJANGO_ALLOWED_HOSTS=None)
    assert result.returncode != 0
    for check in ("security.W004", "security.W008", "security.W009", "security.W012", "security.W016"):
        assert check in result.stderr, check


@pytest.mark.parametrize("env, message", [
    ({"DJANGO_SECRET_KEY": None},
     "DJANGO_ENV=production needs DJANGO_SECRET_KEY in the environment (50 or more random characters); none is set"),
    ({"DJANGO_SECRET_KEY": ""}, "none is set"),
    # the public development key, set on purpose, and the Kubernetes placeholder
    ({"DJANGO_SECRET_KEY": "django-insecure-local-development-key-it-is-public-never-use-it-in-production"},
     "the one set is refused"),
    ({"DJANGO_SECRET_KEY": "CHANGE-ME-a-long-random-string"}, "the one set is refused"),
    ({"DJANGO_SECRET_KEY": "a" * 60}, "the one set is refused"),
    ({"DJANGO_ALLOWED_HOSTS": None}, "DJANGO_ENV=production needs DJANGO_ALLOWED_HOSTS in the environment"),
    ({"DJANGO_ALLOWED_HOSTS": " , "}, "needs DJANGO_ALLOWED_HOSTS"),
    ({"DJANGO_DEBUG": "1"}, "DJANGO_ENV=production refuses DJANGO_DEBUG"),
    ({"DJANGO_ENV": "staging"}, "DJANGO_ENV must be development or production, not 'staging'"),
])
def test_production_refuses_to_start_with_one_line_naming_what_is_missing(env, message):
    result = manage("check", **{**PRODUCTION, **env})
    line = refusal(result)
    assert line.startswith("refusing to start: ") and message in line, line
    assert "Traceback" not in result.stderr


def test_the_image_and_the_manifests_run_under_production():
    import yaml

    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")  # continuation lines joined
    assert re.search(r"^ENV .*\bDJANGO_ENV=production\b", dockerfile, re.M)
    config = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "config.yaml").read_text())["data"]
    assert config["DJANGO_ENV"] == "production"
    assert config["NUM_PROXIES"] == "1"  # the ingress appends the client's address
    assert config["DJANGO_CSRF_TRUSTED_ORIGINS"].startswith("https://")


# --- the web process under production --------------------------------------------------


@pytest.fixture(scope="module")
def production_web(django_db_setup, broker_vhost, static_root, log_dir):
    process = WebProcess(static_root=static_root, log_dir=log_dir, name="web-production", LOG_FORMAT="plain",
                         **{**PRODUCTION, "DJANGO_ALLOWED_HOSTS": "localhost,127.0.0.1"}).start()
    yield process
    process.stop()


def request(web, method: str, path: str, body: str | None = None, **headers: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", web.port, timeout=60)
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    response.body = response.read()
    connection.close()
    return response


HTTPS = {"X-Forwarded-Proto": "https"}  # what the ingress adds to a request that came over TLS


def test_without_a_secret_key_the_web_process_does_not_start(tmp_path):
    env = {**PRODUCTION, "DJANGO_SECRET_KEY": None, "PORT": "0", "WEB_CONCURRENCY": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(["bash", "-c", f"exec {procfile_command('web')}"], cwd=ROOT, capture_output=True,
                            text=True, timeout=180, env=subprocess_env(**env))
    assert result.returncode != 0
    assert "refusing to start: DJANGO_ENV=production needs DJANGO_SECRET_KEY" in result.stderr + result.stdout


@pytest.mark.django_db(transaction=True)
def test_plain_http_is_redirected_to_https_but_the_probes_are_not(production_web):
    response = request(production_web, "GET", "/api/v1/tasks/?page=2", Host="localhost")
    assert response.status == 301
    assert response.getheader("Location") == "https://localhost/api/v1/tasks/?page=2"
    for probe in ("/healthz", "/readyz"):
        assert request(production_web, "GET", probe, Host="10.1.2.3:8000").status == 200, probe


@pytest.mark.django_db(transaction=True)
def test_behind_the_ingress_the_api_builds_https_urls_and_sends_hsts(production_web):
    helper = factories.analyzed_task().helper
    client_headers = {**HTTPS, "Host": "localhost", "Content-Type": "application/json"}
    login = request(production_web, "POST", "/api/v1/auth/token/",
                    f'{{"username": "{helper.username}", "password": "{helper.username}-pass"}}', **client_headers)
    assert login.status == 200, login.body
    token = json.loads(login.body)["token"]
    response = request(production_web, "GET", "/api/v1/tasks/", Authorization=f"Token {token}", **client_headers)
    assert response.status == 200, response.body
    (task,) = json.loads(response.body)["results"]
    assert task["url"].startswith("https://localhost/api/v1/tasks/")
    assert response.getheader("Strict-Transport-Security") == "max-age=31536000; includeSubDomains; preload"


@pytest.mark.django_db(transaction=True)
def test_behind_the_ingress_the_admin_login_sets_secure_cookies_and_its_post_passes_the_origin_check(production_web):
    owner = factories.user("owner-tls", staff=True)
    page = request(production_web, "GET", "/admin/login/", Host="localhost", **HTTPS)
    assert page.status == 200
    cookie = page.getheader("Set-Cookie")
    assert "csrftoken=" in cookie and "Secure" in cookie, cookie
    csrf_cookie = re.search(r"csrftoken=([^;]+)", cookie).group(1)
    form_token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body).group(1).decode()
    body = f"csrfmiddlewaretoken={form_token}&username={owner.username}&password=owner-tls-pass&next=/admin/"
    response = request(production_web, "POST", "/admin/login/", body, Host="localhost", **HTTPS,
                       Origin="https://localhost", Cookie=f"csrftoken={csrf_cookie}",
                       **{"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status == 302, response.body[:2000]  # logged in, not "CSRF verification failed"
    sessions = [c for c in response.msg.get_all("Set-Cookie") if c.startswith("sessionid=")]
    assert sessions and "Secure" in sessions[0] and "HttpOnly" in sessions[0]


@pytest.mark.django_db(transaction=True)
def test_in_production_metrics_are_closed_without_a_token(production_web):
    for headers in ({}, {"Authorization": "Bearer anything"}):
        response = request(production_web, "GET", "/metrics", Host="10.1.2.3:8000", **headers)
        assert response.status == 403
        assert b"closed in production until METRICS_TOKEN is set" in response.body


@pytest.mark.django_db
@override_settings(PRODUCTION=True, METRICS_TOKEN="scrape-token")
def test_in_production_with_a_token_metrics_need_it():
    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token").status_code == 200


def test_the_worker_exporters_listen_on_this_host_only_unless_in_production():
    show = ["shell", "-c", "from django.conf import settings; print(settings.METRICS_EXPORTER_ADDRESS)"]
    assert manage(*show, DJANGO_ENV=None, METRICS_EXPORTER_ADDRESS=None).stdout.split()[-1] == "127.0.0.1"
    # in a pod, Prometheus scrapes the pod's address; the NetworkPolicy admits only Prometheus
    assert manage(*show, **PRODUCTION, METRICS_EXPORTER_ADDRESS=None).stdout.split()[-1] == "0.0.0.0"
