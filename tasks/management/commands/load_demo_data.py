import os
from importlib import import_module

from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils.module_loading import module_has_submodule

from branches.models import Branch, Helper
from fitness.environment import is_production

DEMO_BRANCHES = [
    # code, name, address, owner, helper
    ("gangnam", "Gangnam Station Laundry", "Seoul, Gangnam-gu", "owner1", "helper1"),
    ("mapo", "Mapo Riverside Laundry", "Seoul, Mapo-gu", "owner2", "helper2"),
]


class Command(BaseCommand):
    help = (
        "Load the demo data of `make run`, idempotently: the administrator `admin` (password "
        "DEMO_ADMIN_PASSWORD, default `admin`) and two branches, each with an owner and a helper "
        "(owner1/helper1 at the first, owner2/helper2 at the second; every password is "
        "<username>-pass), plus what each app's `demo` module adds (equipment, customers, device "
        "tokens, three demo photos per helper for the AI to read). Running it again resets those "
        "accounts' passwords and changes nothing else. Refused in production (DJANGO_ENV=production)."
    )

    def handle(self, *args, **options):
        if is_production():
            raise CommandError("load_demo_data refuses to run in production (DJANGO_ENV=production): "
                               "it creates accounts whose passwords are public")
        self._load()

    @transaction.atomic
    def _load(self):
        User = get_user_model()
        admin = self._user(User, "admin", os.environ.get("DEMO_ADMIN_PASSWORD", "admin"), staff=True)
        admin.is_superuser = True
        admin.save(update_fields=["is_superuser"])
        for code, name, address, owner_name, helper_name in DEMO_BRANCHES:
            owner = self._user(User, owner_name, f"{owner_name}-pass", staff=True)
            branch, _ = Branch.objects.update_or_create(
                code=code, defaults={"name": name, "address": address, "owner": owner}
            )
            helper = self._user(User, helper_name, f"{helper_name}-pass", staff=False)
            Helper.objects.update_or_create(user=helper, defaults={"branch": branch})
            self.stdout.write(f"branch {branch.name}: owner {owner_name}, helper {helper_name}")
        for config in apps.get_app_configs():  # each app's own demo rows (its `demo` module), by name
            if module_has_submodule(config.module, "demo"):
                import_module(f"{config.name}.demo").load_demo_data(stdout=self.stdout)
        self.stdout.write("demo data loaded (passwords: admin/admin, otherwise <username>-pass)")

    def _user(self, User, username: str, password: str, *, staff: bool):
        user, _ = User.objects.get_or_create(username=username, defaults={"email": f"{username}@example.com"})
        user.is_staff = staff
        user.set_password(password)
        user.save()
        return user
