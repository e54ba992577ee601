"""The API tokens' retention (see messaging/retention.py): expired tokens go
AUTH_TOKEN_RETENTION_DAYS after their expiry (they stopped working at it; authentication
leaves them alone so that it never writes)."""

from knox.models import AuthToken

from messaging.retention import PruneTarget, register

register(PruneTarget(
    name="auth-tokens", model=AuthToken, retention_setting="AUTH_TOKEN_RETENTION_DAYS", time_field="expiry",
    description="expired API tokens, by their expiry",
))
