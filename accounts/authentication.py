"""`Authorization: Token <key>` against knox's hashed tokens, in one query and without a write.

knox's own TokenAuthentication costs a second query per request (it walks all of the user's
tokens to delete the expired ones) and, with AUTO_REFRESH, a write. Here one SELECT finds the
token by its key's first characters, joined to its user and, for a helper, the helper row and
its branch: what the task upload needs (branches.selectors.helper_branch reads it from there).
An expired token is refused and left alone (the retention prune deletes it, accounts/retention.py);
the expiry is fixed at issue, so nothing is written per request.

The statement is written once, from the models' fields, rather than built by the ORM per
request: `select_related` over three relations cost more CPU to compile (about 0.5 ms) than
the database spends answering it, on every authenticated request (benchmarks/api_submit.py).
It is a prepared statement (fitness.db), so PostgreSQL does not plan it again per request
either. The rows become model instances with `from_db`, as the ORM makes them, with the relations
cached on them as `select_related` caches them.
"""

from __future__ import annotations

import binascii
from functools import cache
from hmac import compare_digest

from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from knox.crypto import hash_token
from knox.models import AuthToken
from knox.settings import CONSTANTS
from rest_framework import exceptions

from branches.models import Branch, Helper


class TokenAuthentication(KnoxTokenAuthentication):
    def authenticate_credentials(self, token: bytes):
        invalid = _("Invalid token.")
        try:
            key = token.decode("utf-8")
            digest = hash_token(key)
        except (UnicodeDecodeError, TypeError, binascii.Error):
            raise exceptions.AuthenticationFailed(invalid) from None
        for candidate in tokens_with_user_and_branch(key[: CONSTANTS.TOKEN_KEY_LENGTH]):
            if compare_digest(digest, candidate.digest):
                return self.validate_user(candidate)
        raise exceptions.AuthenticationFailed(invalid)


def tokens_with_user_and_branch(token_key: str) -> list[AuthToken]:
    """The unexpired tokens with this key prefix, each with its user, and the user's helper row
    and branch (None when the user is no helper), in one statement."""
    sql, columns = _token_statement()
    with connection.cursor() as cursor:
        connection.execute_prepared(cursor, "token_with_user_and_branch", sql, [token_key, timezone.now()])
        rows = cursor.fetchall()
    tokens = []
    for row in rows:
        token, user, helper, branch = _instances(columns, row)
        AuthToken.user.field.set_cached_value(token, user)
        Helper.user.field.remote_field.set_cached_value(user, helper)  # None: loaded, not a helper
        if helper is not None:
            Helper.user.field.set_cached_value(helper, user)
            Helper.branch.field.set_cached_value(helper, branch)
        tokens.append(token)
    return tokens


@cache
def _token_statement() -> tuple[str, list[_Columns]]:
    quote = connection.ops.quote_name
    user_model = get_user_model()
    aliased = [(AuthToken, "t"), (user_model, "u"), (Helper, "h"), (Branch, "b")]
    columns = ", ".join(
        f"{alias}.{quote(field.column)}" for model, alias in aliased for field in model._meta.concrete_fields
    )
    table = {model: quote(model._meta.db_table) for model, _alias in aliased}
    user_pk = quote(user_model._meta.pk.column)
    sql = (
        f"SELECT {columns} FROM {table[AuthToken]} t"
        f" JOIN {table[user_model]} u ON u.{user_pk} = t.{quote(AuthToken.user.field.column)}"
        f" LEFT JOIN {table[Helper]} h ON h.{quote(Helper.user.field.column)} = u.{user_pk}"
        f" LEFT JOIN {table[Branch]} b ON b.{quote(Branch._meta.pk.column)} = h.{quote(Helper.branch.field.column)}"
        f" WHERE t.{quote(AuthToken._meta.get_field('token_key').column)} = %s"
        f" AND t.{quote(AuthToken._meta.get_field('expiry').column)} > %s"
    )
    return sql, [_Columns(model) for model, _alias in aliased]


class _Columns:
    """One model's share of the joined row, in the order of its concrete fields."""

    def __init__(self, model):
        self.model = model
        fields = model._meta.concrete_fields
        self.width = len(fields)
        self.attnames = [field.attname for field in fields]
        self.pk_index = [field.primary_key for field in fields].index(True)
        # what the ORM would apply to each value on its way out of the database (none, for these models today)
        self.converters = [getattr(field, "from_db_value", None) for field in fields]


def _instances(columns: list[_Columns], row: tuple) -> list:
    """Split one joined row into an instance per model; None for a model whose LEFT JOIN found nothing."""
    instances, start = [], 0
    for part in columns:
        values = row[start : start + part.width]
        start += part.width
        if values[part.pk_index] is None:
            instances.append(None)
            continue
        values = [
            value if convert is None else convert(value, None, connection)
            for convert, value in zip(part.converters, values, strict=True)
        ]
        instances.append(part.model.from_db(connection.alias, part.attnames, values))
    return instances
