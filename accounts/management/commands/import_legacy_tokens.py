from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token

from accounts.services import legacy_token_expiry, legacy_tokens_import


class Command(BaseCommand):
    help = (
        "Move the plaintext API tokens of before knox (rest_framework.authtoken) into knox's table, "
        "hashed, each good until one AUTH_TOKEN_TTL_HOURS from now, and delete the plaintext rows. "
        "The migration accounts 0001 did this once; run it after a deploy has rolled out, for the "
        "tokens that web processes of the previous release issued meanwhile. Safe to run again."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Count the tokens that would move; change nothing.")

    def handle(self, *args, dry_run, **options):
        moved = legacy_tokens_import(legacy_model=Token, dry_run=dry_run)
        if dry_run:
            self.stdout.write(f"{moved} plaintext token(s) would move to knox (nothing changed)")
        else:
            until = legacy_token_expiry().strftime("%Y-%m-%d %H:%M UTC")
            self.stdout.write(f"{moved} plaintext token(s) moved to knox, hashed; they work until about {until}")
