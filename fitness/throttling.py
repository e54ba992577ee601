"""Credential guessing: the token endpoint is throttled per username and per client address, the admin
login locks out (django-axes); both answer 429 with Retry-After.

- POST /api/v1/auth/token/ (`LoginUsernameThrottle`, `LoginAddressThrottle`, DRF's scoped rate
  throttles): at most LOGIN_THROTTLE_USERNAME_RATE attempts per username (20 a minute) and
  LOGIN_THROTTLE_ADDRESS_RATE per client address (60 a minute), whatever the password: the 21st
  attempt in a minute is refused even when its password is right, so a guesser learns nothing
  from it. Successful logins count too (an app logs in once and keeps its token).
- The admin login (/admin/login/): django-axes counts failed logins per username and per client
  address (AXES_* in settings.py) and, after AXES_FAILURE_LIMIT of them within AXES_COOLOFF_TIME,
  refuses every login of that username or address, the right password included, until the
  cool-off has passed (`admin_lockout_response`); a successful login clears the count.
  `manage.py axes_reset_username <name>` lifts a lockout early.

The client address is `client_address`: REMOTE_ADDR, unless NUM_PROXIES proxies (the ingress) are
trusted to append to X-Forwarded-For; only their entries are believed, so a client cannot escape
the address throttle by sending an X-Forwarded-For of its own.

The counts must be shared by every gunicorn worker and web pod: DRF's throttles keep them in
Django's cache, which is PostgreSQL (the database cache, CACHES in settings.py; `createcachetable`
creates its table, as `make setup` and the Kubernetes migrate job run it); axes keeps its own
table (AccessAttempt, a migration). There is no Redis in the stack. A throttle reads and then
writes its count, so requests racing on several workers at the same instant can pass a few
beyond the rate; the rate is a bound on guessing, not an exact quota.
"""

from __future__ import annotations

import hashlib
import logging
import math

from django.conf import settings
from django.http import HttpResponse
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger(__name__)


def client_address(request) -> str:
    """The address of the client: REMOTE_ADDR, or, behind NUM_PROXIES trusted proxies, the entry of
    X-Forwarded-For that the outermost of them appended (DRF's rule, used by axes too)."""
    remote_addr = request.META.get("REMOTE_ADDR", "")
    num_proxies = api_settings.NUM_PROXIES or 0
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if num_proxies == 0 or not forwarded:
        return remote_addr
    entries = [entry.strip() for entry in forwarded.split(",")]
    return entries[-min(num_proxies, len(entries))] or remote_addr


class _LoginThrottle(SimpleRateThrottle):
    def get_ident(self, request) -> str:
        return client_address(request)

    def get_rate(self):
        # at call time: DRF's class attribute THROTTLE_RATES is read once, at import
        return api_settings.DEFAULT_THROTTLE_RATES[self.scope]


class LoginUsernameThrottle(_LoginThrottle):
    """Login attempts per username (in the body), from any address."""

    scope = "login-username"

    def get_cache_key(self, request, view):
        data = request.data
        username = data.get("username") if hasattr(data, "get") else None
        if not isinstance(username, str) or not username.strip():
            return None  # nothing to guess; the address throttle still counts it
        # hashed: any characters, any length, in a cache key of fixed size
        ident = hashlib.sha256(username.strip().casefold().encode()).hexdigest()
        return self.cache_format % {"scope": self.scope, "ident": ident}


class LoginAddressThrottle(_LoginThrottle):
    """Login attempts per client address, whatever username."""

    scope = "login-address"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


LOGIN_THROTTLES = [LoginUsernameThrottle, LoginAddressThrottle]


def admin_lockout_response(request, original_response=None, credentials=None) -> HttpResponse:
    """What axes answers a locked-out admin login (AXES_LOCKOUT_CALLABLE): 429 with Retry-After."""
    seconds = math.ceil(settings.AXES_COOLOFF_TIME.total_seconds())
    logger.warning("admin login locked out for %s s: username %r, address %s", seconds,
                   (credentials or {}).get("username"), client_address(request))
    response = HttpResponse(
        f"<h1>Too many failed logins</h1><p>Logins for this account or from this address are refused for "
        f"{math.ceil(seconds / 60)} minutes after {settings.AXES_FAILURE_LIMIT} failed attempts. "
        f"Try again later, or ask an operator to lift the lockout.</p>",
        status=429, content_type="text/html; charset=utf-8",
    )
    response["Retry-After"] = str(seconds)
    return response
