from django.contrib import admin, messages

from branches.owner_admin import BranchOwnerAccess
from monitoring.models import Equipment, Fault, TelemetryReading
from monitoring.selectors import fault_list_visible_to
from monitoring.services import equipment_set_api_key, fault_resolve


@admin.register(Equipment)
class EquipmentAdmin(admin.ModelAdmin):
    """Keys are stored hashed: a new key is shown once, in the message after saving."""

    list_display = ("name", "kind", "branch", "is_active", "api_key_prefix", "created_at")
    list_filter = ("kind", "is_active", "branch")
    search_fields = ("name", "branch__name")
    fields = ("branch", "kind", "name", "is_active", "api_key_prefix")
    readonly_fields = ("api_key_prefix",)
    actions = ["issue_new_key"]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        key = equipment_set_api_key(equipment=obj)  # saves the new equipment with its key
        self.message_user(request, f"The API key of {obj.name} is {key} — copy it now, it is not shown again.")

    @admin.action(description="Issue a new API key (the old one stops working)", permissions=["change"])
    def issue_new_key(self, request, queryset):
        for equipment in queryset:
            key = equipment_set_api_key(equipment=equipment)
            self.message_user(request, f"New API key of {equipment}: {key}", level=messages.WARNING)




@admin.register(Fault)
class FaultAdmin(BranchOwnerAccess, admin.ModelAdmin):
    list_display = ("opened_at", "equipment", "code", "severity", "message", "resolved_at")
    list_filter = ("severity", "resolved_at", "equipment__branch")
    search_fields = ("code", "message", "equipment__name")
    readonly_fields = [f.name for f in Fault._meta.fields]
    list_select_related = ("equipment__branch",)
    actions = ["resolve"]

    def get_queryset(self, request):
        # owners see the faults of their branches only
        return fault_list_visible_to(user=request.user)

    def has_add_permission(self, request):
        return False  # faults come from telemetry

    def has_change_permission(self, request, obj=None):
        return False

    def has_resolve_permission(self, request):
        return request.user.has_perm("monitoring.change_fault") or self.is_branch_owner(request)

    @admin.action(description="Resolve the selected faults (the same fault can then be raised again)",
                  permissions=["resolve"])
    def resolve(self, request, queryset):
        resolved = sum(fault_resolve(fault=fault, by=request.user) for fault in queryset)
        self.message_user(request, f"{resolved} fault(s) resolved.")


@admin.register(TelemetryReading)
class TelemetryReadingAdmin(admin.ModelAdmin):
    list_display = ("recorded_at", "equipment", "error_code", "temperature_c", "vibration_g", "door_open",
                    "cycle_state")
    list_filter = ("equipment__branch", "cycle_state")
    search_fields = ("equipment__name", "error_code")
    readonly_fields = [f.name for f in TelemetryReading._meta.fields]
    list_select_related = ("equipment__branch",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
