from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Sign-in of the apps: knox tokens (hashed, expiring, revocable) and their authentication."""

    name = "accounts"

    def ready(self) -> None:
        from accounts import schema  # noqa: F401  (registers the OpenAPI security scheme)
