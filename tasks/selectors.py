from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q, QuerySet

from tasks.models import LaundryTask


def task_list_for_helper(*, helper: AbstractBaseUser) -> QuerySet[LaundryTask]:
    """The helper's own tasks, newest first, with their readings."""
    return LaundryTask.objects.filter(helper=helper).select_related("reading").order_by("-created_at", "-id")


def task_list_for_owner(*, owner: AbstractBaseUser) -> QuerySet[LaundryTask]:
    """The tasks of every branch the user owns, newest first, with their readings."""
    return (
        LaundryTask.objects.filter(branch__owner_id=owner.pk).select_related("reading").order_by("-created_at", "-id")
    )


def task_get_visible(*, user: AbstractBaseUser, task_id: int) -> LaundryTask | None:
    """A task the user may see: of the branch they help at, or of a branch they own; else None."""
    return (
        LaundryTask.objects.filter(Q(branch__helpers__user_id=user.pk) | Q(branch__owner_id=user.pk), pk=task_id)
        .select_related("reading")
        .distinct()
        .first()
    )
