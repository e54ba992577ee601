"""Admin access for operators: the views that run the messaging backbone are for superusers only.

The outbox, the dead letters, processed-event records, model versions, training data and
retraining runs describe the whole network, not one branch, and their actions (replay,
promote, roll back) change it for everybody. Staff users, branch owners among them, do not
see them even when somebody grants them a model permission by mistake.

`RecordsOnly` and `PermanentRecords` serve every admin of rows the system writes, the
owners' tasks, faults, readings and notifications as well as the operators' records.
"""


class OperatorOnly:
    @staticmethod
    def is_operator(request) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_module_permission(self, request):
        return self.is_operator(request) and super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return self.is_operator(request) and super().has_view_permission(request, obj)

    def has_add_permission(self, request, *args):
        return self.is_operator(request) and super().has_add_permission(request, *args)

    def has_change_permission(self, request, obj=None):
        return self.is_operator(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self.is_operator(request) and super().has_delete_permission(request, obj)


class RecordsOnly:
    """Rows written by the system (events, runs, activations): viewed in the admin, never added or edited there."""

    def has_add_permission(self, request, *args):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class PermanentRecords(RecordsOnly):
    """Records that other rows or the history name: not deleted either."""

    def has_delete_permission(self, request, obj=None):
        return False
