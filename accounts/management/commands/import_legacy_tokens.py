from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token

from accounts.services import legacy_token_expiry, legacy_tokens_import


class Command(BaseCommand):
    help = (
        "Run once a deploy of knox tokens has rolled out: copy the plaintext API tokens of before "
        "knox (rest_framework.authtoken) that are not in knox's table yet into it, hashed, each good "
        "until one AUTH_TOKEN_TTL_HOURS from now, and delete every plaintext row. The migration "
        "accounts 0001 copied the tokens there were; this catches those that web processes of the "
        "previous release issued while the deploy rolled out. Safe to run again."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run", action="store_true", help="Count the tokens that would be copied; change nothing."
        )

    def handle(self, *args, dry_run, **options):
        plaintext = Token.objects.count()
        copied = legacy_tokens_import(legacy_model=Token, dry_run=dry_run)
        if dry_run:
            self.stdout.write(f"{copied} plaintext token(s) would be copied to knox and {plaintext} plaintext "
                              "row(s) deleted (nothing changed)")
        else:
            until = legacy_token_expiry().strftime("%Y-%m-%d %H:%M UTC")
            self.stdout.write(f"{copied} plaintext token(s) copied to knox, hashed (working until about {until}); "
                              f"{plaintext} plaintext row(s) deleted")
