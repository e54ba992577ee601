"""Production (DJANGO_ENV=production) refuses the manifests' placeholder secrets and the demo data."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from branches.models import Branch
from fitness.environment import is_production, placeholder_problem, placeholder_secrets
from tests.support import ROOT, subprocess_env

PLACEHOLDER_URL = "amqp://fitness-setup-broker:CHANGE-ME@127.0.0.1:5672/nowhere"


def test_only_djangos_production_switch_makes_production():
    assert is_production({"DJANGO_ENV": "production"})
    assert not is_production({}) and not is_production({"DJANGO_ENV": "development"})


def test_the_placeholders_of_secrets_yaml_are_found_by_variable():
    environ = {"DJANGO_ENV": "production", "DJANGO_SECRET_KEY": "CHANGE-ME-a-long-random-string",
               "CELERY_BROKER_URL": PLACEHOLDER_URL, "DATABASE_URL": "postgres://fitness:s3cret@db/fitness"}
    assert placeholder_secrets(environ) == ["DJANGO_SECRET_KEY", "CELERY_BROKER_URL"]
    assert placeholder_problem({**environ, "DJANGO_ENV": "development"}) == ""  # a laptop may use anything


def test_setup_broker_refuses_a_placeholder_password_in_production(monkeypatch):
    monkeypatch.setenv("DJANGO_ENV", "production")
    monkeypatch.setenv("CELERY_BROKER_URL", PLACEHOLDER_URL)
    with pytest.raises(CommandError) as refusal:
        call_command("setup_broker")
    assert "CELERY_BROKER_URL" in str(refusal.value) and "\n" not in str(refusal.value)


def test_the_web_does_not_start_on_a_placeholder_secret_in_production():
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--check-config", "fitness.wsgi"], cwd=ROOT, capture_output=True,
        text=True, timeout=120,
        env=subprocess_env(DJANGO_ENV="production", DJANGO_SECRET_KEY="CHANGE-ME-a-long-random-string"),
    )
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("refusing to start: DJANGO_SECRET_KEY still holds the placeholder"), line


@pytest.mark.django_db
def test_load_demo_data_refuses_to_run_in_production(monkeypatch):
    monkeypatch.setenv("DJANGO_ENV", "production")
    with pytest.raises(CommandError) as refusal:
        call_command("load_demo_data")
    assert "refuses to run in production" in str(refusal.value)
    assert not get_user_model().objects.filter(username="admin").exists()
    assert not Branch.objects.exists()


# production's settings refuse to load without a real-looking key and a host (tests/fitness/test_production.py)
REAL_LOOKING_KEY = "k3y-" + "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP"


def test_load_demo_data_exits_non_zero_with_one_line_in_production():
    result = subprocess.run([sys.executable, "manage.py", "load_demo_data"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env=subprocess_env(DJANGO_ENV="production", DJANGO_SECRET_KEY=REAL_LOOKING_KEY,
                                                            DJANGO_ALLOWED_HOSTS="fitness.example.com"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "CommandError: load_demo_data refuses to run in production (DJANGO_ENV=production): "
        "it creates accounts whose passwords are public"]
