from django.contrib.auth.models import AbstractBaseUser

from branches.models import Branch, Helper


def helper_branch(*, user: AbstractBaseUser) -> Branch | None:
    """The branch a user works at as a helper, or None when they are not a helper."""
    helper = Helper.objects.select_related("branch").filter(user_id=user.pk).first()
    return helper.branch if helper else None


def owns_a_branch(*, user: AbstractBaseUser) -> bool:
    """Whether the user owns at least one branch."""
    return Branch.objects.filter(owner_id=user.pk).exists()
