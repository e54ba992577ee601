"""Admin access for branch owners: staff users without model permissions who see their own branches.

A ModelAdmin that owners may use mixes this in and narrows `get_queryset` to their branches;
superusers and staff with the model's permissions keep Django's normal access.
"""

from branches.selectors import owns_a_branch


class BranchOwnerAccess:
    def is_branch_owner(self, request) -> bool:
        user = request.user
        return user.is_active and user.is_staff and owns_a_branch(user=user)

    def has_module_permission(self, request):
        return super().has_module_permission(request) or self.is_branch_owner(request)

    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) or self.is_branch_owner(request)
