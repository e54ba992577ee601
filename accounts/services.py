"""The apps' API tokens: issue, revoke, and bring in the tokens of before knox.

A token is knox's: 64 random hex characters that the app gets once, stored as a SHA-512
digest (knox's table never holds a usable token), with a fixed expiry REST_KNOX["TOKEN_TTL"]
after it was issued. Expiry is not extended by use (knox's AUTO_REFRESH is off): a stolen
token is good for at most that long, and authenticating never writes (accounts/authentication.py).
Each sign-in issues a new token; signing out deletes it, signing out everywhere deletes them all.
The API and the sunset of the old tokens: docs/api.md, Tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import models, transaction
from django.utils import timezone
from knox.crypto import hash_token
from knox.models import AuthToken
from knox.settings import CONSTANTS, knox_settings


@dataclass(frozen=True)
class IssuedToken:
    key: str  # what the app sends as `Authorization: Token <key>`; shown this once, stored hashed
    expiry: datetime
    instance: AuthToken


def token_issue(*, user: AbstractBaseUser) -> IssuedToken:
    """A new token for `user`, valid for TOKEN_TTL (one row; no other token of theirs changes)."""
    instance, key = AuthToken.objects.create(user=user, expiry=knox_settings.TOKEN_TTL)
    return IssuedToken(key=key, expiry=instance.expiry, instance=instance)


def token_revoke(*, token: AuthToken) -> None:
    """Sign out one app: the token stops working at once."""
    token.delete()


def token_revoke_all(*, user: AbstractBaseUser) -> int:
    """Sign out everywhere: every token of `user` stops working at once; how many there were."""
    deleted, _ = AuthToken.objects.filter(user=user).delete()
    return deleted


def legacy_token_expiry(now: datetime | None = None) -> datetime:
    """When a token of before knox stops working: one TOKEN_TTL after it was brought in."""
    return (now or timezone.now()) + knox_settings.TOKEN_TTL


def legacy_tokens_import(
    *, legacy_model: type[models.Model], token_model: type[models.Model] = AuthToken,
    now: datetime | None = None, delete_plaintext: bool = True, dry_run: bool = False,
) -> int:
    """Copy DRF's plaintext tokens (rest_framework.authtoken) into knox's table, hashed; how many
    were not there yet.

    The app keeps sending the same key and it keeps working, now through knox, until
    `legacy_token_expiry` of the copy (the sunset): then it is refused like any expired token
    and the app signs in again. A key copied before keeps its copy as it was, so this is safe
    to run again. The data migration copies and keeps the plaintext rows (`delete_plaintext=False`),
    because web processes of the previous release still authenticate with them until the deploy
    has rolled out; `manage.py import_legacy_tokens` then copies the tokens those processes issued
    meanwhile and deletes the plaintext rows.

    The models are parameters so that the data migration can pass its historical ones.
    """
    expiry = legacy_token_expiry(now)
    with transaction.atomic():
        legacy = list(legacy_model.objects.select_for_update().values_list("key", "user_id"))
        digests = {hash_token(key): (key, user_id) for key, user_id in legacy}
        known = set(token_model.objects.filter(digest__in=list(digests)).values_list("digest", flat=True))
        new = {digest: row for digest, row in digests.items() if digest not in known}
        if dry_run:
            return len(new)
        token_model.objects.bulk_create(
            [
                token_model(digest=digest, token_key=key[: CONSTANTS.TOKEN_KEY_LENGTH], user_id=user_id, expiry=expiry)
                for digest, (key, user_id) in new.items()
            ],
            ignore_conflicts=True,  # a copy made meanwhile stays as it was
        )
        if delete_plaintext:
            legacy_model.objects.filter(key__in=[key for key, _ in legacy]).delete()
    return len(new)
