"""Demo equipment for `manage.py load_demo_data` (idempotent: the same keys every run)."""

from branches.models import Branch
from monitoring.models import Equipment
from monitoring.services import equipment_set_api_key

DEMO_EQUIPMENT = [("washer", "washer-1"), ("washer", "washer-2"), ("dryer", "dryer-1")]
FIRST_BRANCH = "gangnam"  # its washer-1 has the documented key demo-washer-1-key


def demo_api_key(branch: Branch, name: str) -> str:
    if branch.code == FIRST_BRANCH and name == "washer-1":
        return "demo-washer-1-key"
    return f"demo-{branch.code}-{name}-key"


def load_demo_data(*, stdout) -> None:
    for branch in Branch.objects.filter(code__in=[FIRST_BRANCH, "mapo"]).order_by("pk"):
        keys = []
        for kind, name in DEMO_EQUIPMENT:
            equipment, _ = Equipment.objects.get_or_create(
                branch=branch, name=name, defaults={"kind": kind, "api_key_hash": f"unset-{branch.pk}-{name}"}
            )
            key = demo_api_key(branch, name)
            equipment_set_api_key(equipment=equipment, api_key=key)
            keys.append(f"{name} (X-Equipment-Key: {key})")
        stdout.write(f"equipment of {branch.name}: {', '.join(keys)}")
