"""`Authorization: Token <key>` against knox's hashed tokens, in one query and without a write.

knox's own TokenAuthentication costs a second query per request (it walks all of the user's
tokens to delete the expired ones) and, with AUTO_REFRESH, a write. Here one SELECT finds the
token by its key's first characters, joined to its user and, for a helper, the helper row and
its branch: what the task upload needs (branches.selectors.helper_branch reads it from there).
An expired token is refused and left alone (the retention prune deletes it, accounts/retention.py);
the expiry is fixed at issue, so nothing is written per request.
"""

from __future__ import annotations

import binascii
from hmac import compare_digest

from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from knox.crypto import hash_token
from knox.models import AuthToken
from knox.settings import CONSTANTS
from rest_framework import exceptions

# Loaded with the token: the user, and the helper row with its branch when there is one (a
# reverse one-to-one: a user without one gets None cached, so asking costs no query either).
USER_RELATIONS = ("user", "user__helper__branch")


class TokenAuthentication(KnoxTokenAuthentication):
    def authenticate_credentials(self, token: bytes):
        invalid = _("Invalid token.")
        try:
            key = token.decode("utf-8")
            digest = hash_token(key)
        except (UnicodeDecodeError, TypeError, binascii.Error):
            raise exceptions.AuthenticationFailed(invalid) from None
        candidates = AuthToken.objects.select_related(*USER_RELATIONS).filter(
            token_key=key[: CONSTANTS.TOKEN_KEY_LENGTH], expiry__gt=timezone.now()
        )
        for candidate in candidates:
            if compare_digest(digest, candidate.digest):
                return self.validate_user(candidate)
        raise exceptions.AuthenticationFailed(invalid)
