"""Demo device tokens for `manage.py load_demo_data`: one per branch owner and customer (idempotent).

With the default `inbox` backend nothing is pushed; with `fcm` and a real project, FCM
refuses these made-up tokens, and the notification log in the admin shows why.
"""

from branches.models import Branch, CustomerPreference
from notifications.models import DeviceToken
from notifications.services import device_register


def load_demo_data(*, stdout) -> None:
    owners = {branch.owner for branch in Branch.objects.select_related("owner")}
    customers = {preference.customer for preference in CustomerPreference.objects.select_related("customer")}
    for user in sorted(owners | customers, key=lambda user: user.username):
        device_register(user=user, token=f"demo-device-{user.username}", platform=DeviceToken.Platform.ANDROID)
    stdout.write(f"device tokens: one for each of {len(owners)} owner(s) and {len(customers)} customer(s)")
