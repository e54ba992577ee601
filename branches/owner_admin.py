"""Admin access for branch owners: staff users without model permissions who see their own branches.

A ModelAdmin that owners may use mixes in BranchOwnerAccess and names the path from its model
to the branch (`branch_path`). Superusers and staff with the model's own view or change
permission keep Django's normal access to every branch; a branch owner gets view access
(and add or change access where the admin allows it) to the rows of their own branches only;
everybody else gets nothing. The narrowing happens in `get_queryset`, which every admin view
goes through: the lists and their counts, search, facets, the change, history and delete
pages, actions (Django filters the selected ids through it), and autocomplete (Django asks
the related model's admin). A URL with another branch's id therefore finds nothing and ends
in the admin's "doesn't exist" redirect, never in content.

Two places Django does not route through `get_queryset`, and what covers them here:
foreign-key choices on forms (`formfield_for_foreignkey` limits them to the branches and
rows the user may see) and the choices of a related-field list filter (Django's
RelatedFieldListFilter lists every row of the related model: use OwnBranchListFilter).
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_permission_codename
from django.core.exceptions import ImproperlyConfigured

from branches.models import Branch
from branches.selectors import branch_list_owned_by, owns_a_branch


def is_branch_owner(request) -> bool:
    """An active staff user who owns a branch (asked once per request)."""
    cached = getattr(request, "_fitness_is_branch_owner", None)
    if cached is None:
        user = request.user
        cached = bool(user.is_active and user.is_staff and owns_a_branch(user=user))
        request._fitness_is_branch_owner = cached
    return cached


class BranchOwnerAccess:
    #: the lookup from the admin's model to its Branch; "" when the model is Branch itself
    branch_path: str = "branch"
    #: what an owner may do besides viewing, for the rows of their own branches
    owner_can_add: bool = False
    owner_can_change: bool = False

    def is_branch_owner(self, request) -> bool:
        return is_branch_owner(request)

    def sees_every_branch(self, request) -> bool:
        """Django's normal access: superusers and staff with the model's own view/change permission."""
        user = request.user
        if not user.is_active:
            return False
        opts = self.opts
        return user.is_superuser or any(
            user.has_perm(f"{opts.app_label}.{get_permission_codename(action, opts)}") for action in ("view", "change")
        )

    def owner_lookup(self) -> str:
        return f"{self.branch_path}__owner_id" if self.branch_path else "owner_id"

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if self.sees_every_branch(request):
            return queryset
        if not self.is_branch_owner(request):
            return queryset.none()
        return queryset.filter(**{self.owner_lookup(): request.user.pk})

    def is_own(self, request, obj) -> bool:
        """Whether `obj` is among the rows the user may see (True for no object: the list)."""
        return obj is None or self.get_queryset(request).filter(pk=obj.pk).exists()

    def _owner_may(self, request, obj=None) -> bool:
        return self.is_branch_owner(request) and self.is_own(request, obj)

    def has_module_permission(self, request):
        return super().has_module_permission(request) or self.is_branch_owner(request)

    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) or self._owner_may(request, obj)

    def has_add_permission(self, request):
        return super().has_add_permission(request) or (self.owner_can_add and self.is_branch_owner(request))

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) or (self.owner_can_change and self._owner_may(request, obj))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        """Owners choose among their own branches (and rows of them), never another branch's."""
        if "queryset" not in kwargs and not self.sees_every_branch(request):
            related = db_field.related_model
            related_admin = self.admin_site._registry.get(related)
            if related is Branch:
                kwargs["queryset"] = branch_list_owned_by(user=request.user)
            elif isinstance(related_admin, BranchOwnerAccess):
                kwargs["queryset"] = related_admin.get_queryset(request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class OwnBranchListFilter(admin.RelatedFieldListFilter):
    """A branch filter that lists only the branches the user may see.

    Django's RelatedFieldListFilter lists every branch of the network to anybody who can open
    the list. Use it as `("branch", OwnBranchListFilter)` or `("equipment__branch", ...)`.
    """

    def field_choices(self, field, request, model_admin):
        if field.related_model is not Branch:
            raise ImproperlyConfigured(f"OwnBranchListFilter filters by a branch, not by {field.related_model}")
        if isinstance(model_admin, BranchOwnerAccess):
            every_branch = model_admin.sees_every_branch(request)
        else:  # an admin without owner access: whoever reaches its list has the model's permissions
            every_branch = model_admin.has_view_permission(request)
        branches = Branch.objects.order_by("name", "pk") if every_branch else branch_list_owned_by(user=request.user)
        return [(branch.pk, str(branch)) for branch in branches]
