import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Load demo data for `make run`: an administrator account (user `admin`, password "
        "from DEMO_ADMIN_PASSWORD, default `admin`). Idempotent; never touches existing accounts' data "
        "other than the demo administrator's password."
    )

    def handle(self, *args, **options):
        User = get_user_model()
        password = os.environ.get("DEMO_ADMIN_PASSWORD", "admin")
        admin, created = User.objects.get_or_create(
            username="admin", defaults={"is_staff": True, "is_superuser": True, "email": "admin@example.com"}
        )
        admin.set_password(password)
        admin.save()
        self.stdout.write(f"demo administrator {'created' if created else 'updated'}: admin")
