"""Demo laundry tasks for `manage.py load_demo_data` (idempotent: one Idempotency-Key per photo).

Each demo helper submits three photos of tasks/demo_photos/ (synthetic garments like the ones
the first model is trained on) through the same service as the REST API, so their
TaskSubmittedEvents wait in task.submitted until the AI workers of `make run` read them and
the branch owners find readings to confirm in the admin.
"""

from pathlib import Path

from django.core.files import File

from branches.models import Helper
from tasks.services import task_submit

PHOTOS = sorted((Path(__file__).resolve().parent / "demo_photos").glob("*.jpg"))
PER_HELPER = 3
DEMO_HELPERS = ("helper1", "helper2")


def load_demo_data(*, stdout) -> None:
    helpers = Helper.objects.select_related("user", "branch").filter(user__username__in=DEMO_HELPERS)
    for offset, helper in enumerate(helpers.order_by("user__username")):
        created = 0
        for path in PHOTOS[offset * PER_HELPER:(offset + 1) * PER_HELPER]:
            with path.open("rb") as photo:
                submission = task_submit(
                    helper=helper.user, branch=helper.branch, photo=File(photo, name=path.name),
                    note="demo photo",
                    idempotency_key=f"demo-photo-{path.stem}",
                )
            created += submission.created
        stdout.write(f"demo tasks of {helper.user.username} at {helper.branch.name}: {created} new")
