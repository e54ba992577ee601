"""Equipment, faults and telemetry in the admin.

Branch owners (BranchOwnerAccess) see the equipment of their own branches with its current
state, its faults (acknowledge, resolve) and its readings. API keys are for superusers and
staff with the change permission: owners see neither the key prefix nor the key actions.
"""

from urllib.parse import urlencode

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from branches.owner_admin import BranchOwnerAccess, OwnBranchListFilter
from fitness.operator_admin import RecordsOnly
from monitoring.models import Equipment, Fault, TelemetryReading
from monitoring.selectors import equipment_with_state
from monitoring.services import equipment_set_api_key, fault_acknowledge, fault_resolve


def changelist_url(admin_site, model, **filters) -> str:
    """The admin list of `model`, filtered by `filters` (list-filter query parameters)."""
    opts = model._meta
    return reverse(f"{admin_site.name}:{opts.app_label}_{opts.model_name}_changelist") + "?" + urlencode(filters)


@admin.register(Equipment)
class EquipmentAdmin(BranchOwnerAccess, admin.ModelAdmin):
    """Keys are stored hashed: a new key is shown once, in the message after saving."""

    list_display = ("name", "kind", "branch", "is_active", "cycle_state", "temperature", "last_seen",
                    "open_faults", "api_key_prefix", "created_at")
    list_filter = ("kind", "is_active", ("branch", OwnBranchListFilter))
    search_fields = ("name", "branch__name")
    list_select_related = ("branch",)
    fields = ("branch", "kind", "name", "is_active", "api_key_prefix")
    state_fields = ("cycle_state", "temperature", "last_seen", "open_faults", "readings")
    actions = ["issue_new_key"]

    def get_queryset(self, request):
        return equipment_with_state(equipment=super().get_queryset(request))

    def manages_keys(self, request) -> bool:
        return self.has_change_permission(request)  # owners only view their equipment

    def get_list_display(self, request):
        shown = super().get_list_display(request)
        return shown if self.manages_keys(request) else [name for name in shown if name != "api_key_prefix"]

    def get_fields(self, request, obj=None):
        fields = [name for name in self.fields if name != "api_key_prefix" or self.manages_keys(request)]
        return fields + list(self.state_fields) if obj is not None else fields

    def get_readonly_fields(self, request, obj=None):
        return ("api_key_prefix", *self.state_fields)

    @admin.display(description="cycle state", ordering="state_cycle")
    def cycle_state(self, equipment: Equipment) -> str:
        return getattr(equipment, "state_cycle", None) or "-"

    @admin.display(description="temperature", ordering="state_temperature_c")
    def temperature(self, equipment: Equipment) -> str:
        value = getattr(equipment, "state_temperature_c", None)
        return f"{value:.1f} °C" if value is not None else "-"

    @admin.display(description="last seen", ordering="last_seen_at")
    def last_seen(self, equipment: Equipment):
        return getattr(equipment, "last_seen_at", None) or "never"

    @admin.display(description="open faults", ordering="open_fault_count")
    def open_faults(self, equipment: Equipment) -> str:
        count = getattr(equipment, "open_fault_count", 0)
        if not count:
            return "0"
        url = changelist_url(self.admin_site, Fault, equipment__id__exact=equipment.pk, resolved_at__isnull="True")
        return format_html('<a href="{}">{}</a>', url, count)

    @admin.display(description="readings")
    def readings(self, equipment: Equipment) -> str:
        url = changelist_url(self.admin_site, TelemetryReading, equipment__id__exact=equipment.pk)
        return format_html('<a href="{}">All readings of {}</a>', url, equipment.name)

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


class FaultStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("open", "open (not acknowledged)"), ("acknowledged", "acknowledged"), ("resolved", "resolved")]

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(resolved_at__isnull=True, acknowledged_at__isnull=True)
        if self.value() == "acknowledged":
            return queryset.filter(resolved_at__isnull=True, acknowledged_at__isnull=False)
        if self.value() == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.register(Fault)
class FaultAdmin(RecordsOnly, BranchOwnerAccess, admin.ModelAdmin):
    """The fault history, raised from telemetry. Owners acknowledge (they are on it) and resolve (fixed)
    their faults, through the actions."""

    branch_path = "equipment__branch"
    list_display = ("opened_at", "equipment", "code", "severity", "message", "state", "acknowledged_at",
                    "resolved_at")
    list_filter = (FaultStateFilter, "severity", "resolved_at", ("equipment__branch", OwnBranchListFilter))
    search_fields = ("code", "message", "equipment__name")
    readonly_fields = [f.name for f in Fault._meta.fields] + ["state"]
    list_select_related = ("equipment__branch",)
    actions = ["acknowledge", "resolve"]

    def has_resolve_permission(self, request):
        return request.user.has_perm("monitoring.change_fault") or self.is_branch_owner(request)

    has_acknowledge_permission = has_resolve_permission

    @admin.display(description="state")
    def state(self, fault: Fault) -> str:
        return fault.state

    @admin.action(description="Acknowledge the selected faults (you are on it; they stay open)",
                  permissions=["acknowledge"])
    def acknowledge(self, request, queryset):
        faults = list(queryset)
        done = sum(fault_acknowledge(fault=fault, by=request.user) for fault in faults)
        self.message_user(request, f"{done} fault(s) acknowledged.")
        if len(faults) > done:
            self.message_user(request, f"{len(faults) - done} already acknowledged or resolved: unchanged.",
                              messages.WARNING)

    @admin.action(description="Resolve the selected faults (the same fault can then be raised again)",
                  permissions=["resolve"])
    def resolve(self, request, queryset):
        resolved = sum(fault_resolve(fault=fault, by=request.user) for fault in queryset)
        self.message_user(request, f"{resolved} fault(s) resolved.")


@admin.register(TelemetryReading)
class TelemetryReadingAdmin(RecordsOnly, BranchOwnerAccess, admin.ModelAdmin):
    """Readings, read-only; owners see those of their own equipment."""

    branch_path = "equipment__branch"
    list_display = ("recorded_at", "equipment", "error_code", "temperature_c", "vibration_g", "door_open",
                    "cycle_state")
    list_filter = ("cycle_state", ("recorded_at", admin.DateFieldListFilter),
                   ("equipment__branch", OwnBranchListFilter))
    search_fields = ("equipment__name", "error_code")
    readonly_fields = [f.name for f in TelemetryReading._meta.fields]
    list_select_related = ("equipment__branch",)
    ordering = ("-recorded_at", "-id")
    show_full_result_count = False  # a busy network has millions of readings
