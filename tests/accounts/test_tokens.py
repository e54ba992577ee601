"""API tokens (knox): hashed, expiring, revocable; sign-out; the old plaintext tokens' sunset;
authentication in one query, without a write."""

import importlib
from contextlib import contextmanager
from datetime import timedelta
from unittest import mock

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from knox.crypto import hash_token
from knox.models import AuthToken
from knox.settings import CONSTANTS, knox_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.api import TokenObtainView
from accounts.authentication import tokens_with_user_and_branch
from accounts.services import token_issue
from branches.selectors import helper_branch
from tasks.models import LaundryTask
from tests import factories
from tests.support import statement_sql

pytestmark = pytest.mark.django_db

TOKEN_URL = "/api/v1/auth/token/"
LOGOUT_URL = "/api/v1/auth/logout/"
LOGOUT_ALL_URL = "/api/v1/auth/logout-all/"
NOTIFICATIONS = "/api/v1/notifications/"  # any endpoint that needs a signed-in user


def client_with(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def works(key: str) -> bool:
    status = client_with(key).get(NOTIFICATIONS).status_code
    assert status in {200, 401}, status
    return status == 200


@contextmanager
def clock_at(moment):
    with mock.patch("django.utils.timezone.now", return_value=moment):
        yield


def sign_in(username: str, **kwargs) -> dict:
    response = APIClient().post(TOKEN_URL, {"username": username, "password": f"{username}-pass"}, **kwargs)
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.parametrize("body_format", ["form", "json"])
def test_sign_in_issues_a_new_expiring_token_that_is_stored_only_as_a_hash(body_format):
    user = factories.helper(username=f"signin-{body_format}")
    before = timezone.now()

    first = sign_in(user.username, **({"format": "json"} if body_format == "json" else {}))
    second = sign_in(user.username)

    assert set(first) == {"token", "expiry"}
    assert len(first["token"]) == 64 and first["token"] != second["token"], "a new token at every sign-in"
    expiry = AuthToken.objects.get(digest=hash_token(first["token"])).expiry
    assert before + knox_settings.TOKEN_TTL <= expiry <= timezone.now() + knox_settings.TOKEN_TTL
    assert first["expiry"] == expiry.isoformat().replace("+00:00", "Z")
    stored = list(AuthToken.objects.filter(user=user).values_list("digest", "token_key"))
    assert len(stored) == 2 and all(first["token"] not in row and second["token"] not in row for row in stored)
    assert works(first["token"]) and works(second["token"])


def test_a_wrong_password_is_400_as_before_and_issues_nothing():
    factories.helper(username="wrong-pass")

    response = APIClient().post(TOKEN_URL, {"username": "wrong-pass", "password": "nope"}, format="json")

    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["Unable to log in with provided credentials."]}
    assert not AuthToken.objects.exists()


def test_a_token_is_refused_once_it_expired_and_using_it_never_extended_it():
    key = sign_in(factories.user("expiring").username)["token"]
    expiry = AuthToken.objects.get().expiry

    with clock_at(expiry - timedelta(seconds=1)):
        assert works(key)
    assert AuthToken.objects.get().expiry == expiry, "no sliding expiry: authenticating writes nothing"
    with clock_at(expiry + timedelta(seconds=1)):
        assert not works(key)
        assert not works(key), "and stays refused"


def test_wrong_tokens_and_inactive_users_are_401():
    user = factories.user()
    key = factories.api_token(user)

    assert not works(key[:-1] + ("0" if key[-1] != "0" else "1"))  # same lookup prefix, other digest
    assert not works("x" * 64)
    assert client_with("").get(NOTIFICATIONS).status_code == 401
    user.is_active = False
    user.save()
    assert not works(key)


def test_logout_revokes_the_token_in_use_only():
    user = factories.user()
    phone, tablet = factories.api_token(user), factories.api_token(user)

    assert client_with(phone).post(LOGOUT_URL).status_code == 204

    assert not works(phone) and works(tablet)
    assert client_with(phone).post(LOGOUT_URL).status_code == 401, "a revoked token cannot sign out again"


def test_logout_all_revokes_every_token_of_the_user_and_no_one_elses():
    user, other = factories.user(), factories.user()
    phone, tablet, others = factories.api_token(user), factories.api_token(user), factories.api_token(other)

    assert client_with(tablet).post(LOGOUT_ALL_URL).status_code == 204

    assert not works(phone) and not works(tablet)
    assert works(others)
    assert APIClient().post(LOGOUT_ALL_URL).status_code == 401


def test_the_token_view_keeps_the_usual_throttle_hook():
    # rate limits are set as the view's throttle_classes (DRF's own attribute, default from settings)
    assert isinstance(TokenObtainView.throttle_classes, (list, tuple))
    assert TokenObtainView.authentication_classes == []


# --- the tokens of before knox ------------------------------------------------------------------
def run_the_data_migration() -> None:
    migration = importlib.import_module("accounts.migrations.0001_import_legacy_tokens")
    migration.import_legacy_tokens(apps, None)


def test_an_old_plaintext_token_keeps_working_after_the_migration_then_is_refused_after_its_sunset():
    user = factories.helper()
    old_key = Token.objects.create(user=user).key  # what the app got from DRF's obtain_auth_token
    migrated_at = timezone.now()

    run_the_data_migration()

    (copy,) = AuthToken.objects.filter(user=user)
    assert old_key not in (copy.digest, copy.token_key) and len(copy.token_key) == 15, "stored hashed"
    assert Token.objects.filter(key=old_key).exists(), "the previous release's web processes still use it"
    assert works(old_key), "the app's token works without it signing in again"
    sunset = migrated_at + knox_settings.TOKEN_TTL
    assert abs((copy.expiry - sunset).total_seconds()) < 60
    with clock_at(copy.expiry - timedelta(minutes=1)):
        assert works(old_key)
    with clock_at(copy.expiry + timedelta(seconds=1)):
        assert not works(old_key)


def test_after_the_rollout_the_command_copies_what_the_old_release_issued_and_deletes_the_plaintext(capsys):
    early, late = factories.user(), factories.user()
    early_key = Token.objects.create(user=early).key
    run_the_data_migration()
    early_expiry = AuthToken.objects.get().expiry
    late_key = Token.objects.create(user=late).key  # issued by a web process of the previous release

    call_command("import_legacy_tokens", "--dry-run")
    assert "1 plaintext token(s) would be copied to knox and 2 plaintext row(s) deleted" in capsys.readouterr().out
    assert Token.objects.count() == 2
    call_command("import_legacy_tokens")
    call_command("import_legacy_tokens")

    out = capsys.readouterr().out
    assert "1 plaintext token(s) copied to knox" in out and "2 plaintext row(s) deleted" in out
    assert "0 plaintext token(s) copied to knox" in out and "0 plaintext row(s) deleted" in out
    assert not Token.objects.exists(), "no plaintext key is left in the database"
    assert AuthToken.objects.count() == 2 and AuthToken.objects.get(user=early).expiry == early_expiry
    assert works(early_key) and works(late_key)


def test_the_data_migration_is_safe_to_run_again():
    key = Token.objects.create(user=factories.user()).key
    run_the_data_migration()
    run_the_data_migration()

    assert AuthToken.objects.count() == 1 and works(key)


# --- the cost of authenticating -------------------------------------------------------------------
def test_an_authenticated_request_costs_one_query_for_the_user_and_the_helpers_branch_and_writes_nothing(
    django_assert_num_queries,
):
    helper = factories.helper()
    task = LaundryTask.objects.create(
        branch=helper.helper.branch, helper=helper, photo="tasks/x.jpg", photo_sha256="0" * 64, photo_size=1,
        photo_content_type="image/jpeg",
    )
    client = factories.api_client_for(helper)

    # 1: the token with its user, helper row and branch; 2: the task (with its reading)
    with django_assert_num_queries(2) as captured:
        assert client.get(f"/api/v1/tasks/{task.pk}/").status_code == 200

    statements = [statement_sql(q["sql"]) for q in captured.captured_queries]
    assert all(table in statements[0] for table in ("knox_authtoken", "branches_helper", "branches_branch"))
    assert all(sql.lstrip().upper().startswith("SELECT") for sql in statements)


def test_the_upload_finds_the_helpers_branch_in_the_authentication_query():
    helper = factories.helper()
    client = factories.api_client_for(helper)

    with CaptureQueriesContext(connection) as captured:
        response = client.post("/api/v1/tasks/", {"photo": factories_upload()}, format="multipart")

    assert response.status_code == 202, response.content
    statements = [statement_sql(q["sql"]) for q in captured.captured_queries]
    assert sum("knox_authtoken" in sql for sql in statements) == 1, "one query authenticates"
    assert sum('"branches_helper"' in sql for sql in statements) == 1, "…and it brought the branch along"
    writes = [sql for sql in statements if not sql.lstrip().upper().startswith(("SELECT", "SAVEPOINT", "RELEASE"))]
    assert not [sql for sql in writes if "knox_authtoken" in sql or '"auth_user"' in sql], writes
    assert LaundryTask.objects.get().branch == helper.helper.branch


def factories_upload():
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("laundry.jpg", factories.photo_bytes(), content_type="image/jpeg")


def test_the_retention_prune_deletes_tokens_some_days_after_they_expired(settings):
    from messaging.retention import prune_all

    settings.AUTH_TOKEN_RETENTION_DAYS = 7
    user = factories.user()
    for days_past_expiry in (8, 6, -1):
        token = token_issue(user=user).instance
        AuthToken.objects.filter(pk=token.pk).update(expiry=timezone.now() - timedelta(days=days_past_expiry))

    (result,) = prune_all(tables=["auth-tokens"])

    assert result.deleted == 1
    assert sorted(round((timezone.now() - e).total_seconds() / 86400) for e in
                  AuthToken.objects.values_list("expiry", flat=True)) == [-1, 6]


@pytest.mark.parametrize("kind", ["helper", "owner"])
def test_the_one_statement_loads_the_same_token_user_helper_and_branch_as_the_orm(kind):
    user = factories.helper() if kind == "helper" else factories.branch().owner
    key = factories.api_token(user)

    (token,) = tokens_with_user_and_branch(key[: CONSTANTS.TOKEN_KEY_LENGTH])
    expected = AuthToken.objects.select_related("user", "user__helper__branch").get(digest=hash_token(key))

    def fields(instance):
        return {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields}

    with CaptureQueriesContext(connection) as captured:
        assert fields(token) == fields(expected) and fields(token.user) == fields(expected.user)
        assert not token._state.adding and token._state.db == "default"
        if kind == "helper":
            assert fields(token.user.helper) == fields(expected.user.helper)
            assert fields(token.user.helper.branch) == fields(expected.user.helper.branch)
            assert token.user.helper.user is token.user
        assert helper_branch(user=token.user) == (user.helper.branch if kind == "helper" else None)
    assert captured.captured_queries == [], "everything came with the one statement"


def test_an_expired_or_unknown_key_loads_nothing():
    key = factories.api_token(factories.helper())
    AuthToken.objects.update(expiry=timezone.now() - timedelta(seconds=1))

    assert tokens_with_user_and_branch(key[: CONSTANTS.TOKEN_KEY_LENGTH]) == []
    assert tokens_with_user_and_branch("0" * CONSTANTS.TOKEN_KEY_LENGTH) == []
