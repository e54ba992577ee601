from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from branches.models import Branch
from tasks.models import LaundryTask


def task_list_for_helper(*, helper: AbstractBaseUser) -> QuerySet[LaundryTask]:
    """The helper's own tasks, newest first, with their readings."""
    return LaundryTask.objects.filter(helper=helper).select_related("reading").order_by("-created_at", "-id")


def task_get_for_branch(*, branch: Branch, task_id: int) -> LaundryTask | None:
    """A task of `branch`; None for a task of another branch (so it reads as not found)."""
    return LaundryTask.objects.filter(branch=branch, pk=task_id).select_related("reading").first()
