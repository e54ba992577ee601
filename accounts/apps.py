from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Sign-in of the apps: knox tokens (hashed, expiring, revocable) and their authentication."""

    name = "accounts"
