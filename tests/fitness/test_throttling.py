"""Credential guessing is refused (fitness/throttling.py): the token endpoint per username and per
client address (DRF's throttles, their counts in PostgreSQL), the admin login by django-axes;
both with 429 and Retry-After, the right password included once the limit is reached."""

from __future__ import annotations

import copy

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client, override_settings
from rest_framework.test import APIClient

from tests import factories

TOKEN_URL = "/api/v1/auth/token/"
ADMIN_LOGIN_URL = "/admin/login/"

pytestmark = pytest.mark.django_db


def rest_framework(**changes):
    """REST_FRAMEWORK with `changes` (rates: a dict merged into DEFAULT_THROTTLE_RATES)."""
    config = copy.deepcopy(settings.REST_FRAMEWORK)
    config["DEFAULT_THROTTLE_RATES"].update(changes.pop("rates", {}))
    config.update(changes)
    return config


def token_attempt(username: str, password: str, **extra):
    return APIClient().post(TOKEN_URL, {"username": username, "password": password}, format="json", **extra)


def assert_throttled(response):
    assert response.status_code == 429, (response.status_code, response.content)
    assert 0 < int(response["Retry-After"]) <= 60
    assert "throttled" in response.json()["detail"]


def test_the_21st_login_attempt_of_a_username_in_a_minute_is_refused_even_with_the_right_password():
    helper = factories.helper()
    assert settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["login-username"] == "20/min"
    for attempt in range(20):
        # from 20 addresses: the username's own count refuses the 21st, not the address's
        response = token_attempt(helper.username, f"guess-{attempt}", REMOTE_ADDR=f"10.0.0.{attempt + 1}")
        assert response.status_code == 400, attempt
    response = token_attempt(helper.username, f"{helper.username}-pass", REMOTE_ADDR="10.0.1.1")
    assert_throttled(response)
    assert "token" not in response.json()
    # the same name in other case and with spaces is the same name
    assert_throttled(token_attempt(f" {helper.username.upper()} ", "x", REMOTE_ADDR="10.0.1.2"))
    # another user, from an address that made none of these attempts, logs in
    other = factories.helper()
    assert token_attempt(other.username, f"{other.username}-pass", REMOTE_ADDR="10.0.2.1").status_code == 200


def test_the_61st_login_attempt_from_one_address_in_a_minute_is_refused_whatever_the_username():
    helper = factories.helper()
    for attempt in range(60):
        assert token_attempt(f"nobody-{attempt}", "guess", REMOTE_ADDR="10.1.0.1").status_code == 400, attempt
    assert_throttled(token_attempt(helper.username, f"{helper.username}-pass", REMOTE_ADDR="10.1.0.1"))
    assert token_attempt(helper.username, f"{helper.username}-pass", REMOTE_ADDR="10.1.0.2").status_code == 200


@override_settings(REST_FRAMEWORK=rest_framework(rates={"login-address": "3/min"}))
def test_without_trusted_proxies_a_forged_x_forwarded_for_does_not_reset_the_address_count():
    assert settings.REST_FRAMEWORK["NUM_PROXIES"] == 0  # the default: the header is not believed
    for attempt in range(3):
        forged = f"1.1.1.{attempt}"
        response = token_attempt(f"a{attempt}", "guess", REMOTE_ADDR="10.2.0.1", HTTP_X_FORWARDED_FOR=forged)
        assert response.status_code == 400
    assert_throttled(token_attempt("a9", "guess", REMOTE_ADDR="10.2.0.1", HTTP_X_FORWARDED_FOR="1.1.1.99"))


@override_settings(REST_FRAMEWORK=rest_framework(rates={"login-address": "3/min"}, NUM_PROXIES=1))
def test_behind_the_ingress_the_address_it_appended_counts_and_entries_before_it_are_ignored():
    ingress = "10.3.0.1"  # every request comes from the ingress controller's pod
    for attempt in range(3):
        # the client forges the first entry; the ingress appends the address it saw (203.0.113.7)
        forwarded = f"198.51.100.{attempt}, 203.0.113.7"
        response = token_attempt(f"b{attempt}", "guess", REMOTE_ADDR=ingress, HTTP_X_FORWARDED_FOR=forwarded)
        assert response.status_code == 400
    assert_throttled(token_attempt("b9", "guess", REMOTE_ADDR=ingress,
                                   HTTP_X_FORWARDED_FOR="198.51.100.99, 203.0.113.7"))
    # another client behind the same ingress has its own count
    assert token_attempt("b9", "guess", REMOTE_ADDR=ingress, HTTP_X_FORWARDED_FOR="203.0.113.8").status_code == 400


# --- the admin login (django-axes) ------------------------------------------------------


def admin_login(username: str, password: str, address: str = "10.9.0.1") -> tuple[Client, object]:
    client = Client(REMOTE_ADDR=address)
    response = client.post(ADMIN_LOGIN_URL, {"username": username, "password": password, "next": "/admin/"})
    return client, response


def logged_in(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


def test_the_21st_admin_login_of_a_username_is_refused_even_with_the_right_password():
    owner = factories.user("owner-locked", staff=True)
    assert settings.AXES_FAILURE_LIMIT == 20
    for attempt in range(20):
        # from several addresses: the username is locked whatever the address
        _, response = admin_login(owner.username, f"guess-{attempt}", address=f"10.9.1.{attempt % 5 + 1}")
        if attempt < 19:
            assert response.status_code == 200 and b"errornote" in response.content, attempt  # the form, again
        else:  # the 20th failure locks: its own answer says so
            assert response.status_code == 429
    client, response = admin_login(owner.username, "owner-locked-pass", address="10.9.2.1")
    assert response.status_code == 429
    assert int(response["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds() == 900
    assert b"Too many failed logins" in response.content
    assert not logged_in(client)
    # the operator lifts it: the right password works again
    call_command("axes_reset_username", owner.username, stdout=open("/dev/null", "w"))
    client, response = admin_login(owner.username, "owner-locked-pass")
    assert response.status_code == 302 and logged_in(client)


def test_an_address_that_failed_20_admin_logins_is_locked_out_for_every_username():
    owner = factories.user("owner-elsewhere", staff=True)
    for attempt in range(20):
        admin_login(f"guess-{attempt}", "guess", address="10.9.3.1")
    client, response = admin_login(owner.username, "owner-elsewhere-pass", address="10.9.3.1")
    assert response.status_code == 429 and not logged_in(client)
    client, response = admin_login(owner.username, "owner-elsewhere-pass", address="10.9.3.2")
    assert response.status_code == 302 and logged_in(client)


def test_a_successful_admin_login_clears_the_failures_of_the_username():
    owner = factories.user("owner-forgetful", staff=True)
    for attempt in range(19):
        admin_login(owner.username, f"guess-{attempt}")
    assert admin_login(owner.username, "owner-forgetful-pass")[1].status_code == 302
    for attempt in range(19):
        admin_login(owner.username, f"again-{attempt}")
    client, response = admin_login(owner.username, "owner-forgetful-pass")
    assert response.status_code == 302 and logged_in(client)


def test_axes_leaves_the_api_to_its_throttles():
    helper = factories.helper()
    for attempt in range(19):
        token_attempt(helper.username, f"guess-{attempt}", REMOTE_ADDR="10.4.0.1")
    # axes would lock after 20 failures at the admin; the API's own limit is what counts here
    assert token_attempt(helper.username, f"{helper.username}-pass", REMOTE_ADDR="10.4.0.1").status_code == 200
