from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from branches.selectors import helper_branch
from tasks.models import LaundryTask


def task_list_for_helper(*, helper: AbstractBaseUser) -> QuerySet[LaundryTask]:
    """The helper's own tasks, newest first, with their readings."""
    return LaundryTask.objects.filter(helper=helper).select_related("reading").order_by("-created_at", "-id")


def task_list_for_owner(*, owner: AbstractBaseUser) -> QuerySet[LaundryTask]:
    """The tasks of every branch the user owns, newest first, with their readings."""
    return (
        LaundryTask.objects.filter(branch__owner_id=owner.pk).select_related("reading").order_by("-created_at", "-id")
    )


def task_list_visible(*, user: AbstractBaseUser) -> QuerySet[LaundryTask]:
    """The tasks the user may see, newest first: a helper's own (not a colleague's: the
    privacy default), else those of the branches the user owns.

    The one rule for both the task list and a task by id, so the two always agree.
    """
    if helper_branch(user=user) is not None:
        return task_list_for_helper(helper=user)
    return task_list_for_owner(owner=user)


def task_get_visible(*, user: AbstractBaseUser, task_id: int) -> LaundryTask | None:
    """A task the user may see (`task_list_visible`), or None."""
    return task_list_visible(user=user).filter(pk=task_id).first()
