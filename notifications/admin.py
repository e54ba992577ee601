from django.contrib import admin

from fitness.operator_admin import RecordsOnly
from notifications.models import DeviceToken, Notification, PushDelivery
from notifications.selectors import notification_list_visible_to


class PushDeliveryInline(admin.TabularInline):
    model = PushDelivery
    fields = ("device_name", "status", "attempts", "provider_message_id", "error", "last_attempt_at", "sent_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    @admin.display(description="device")
    def device_name(self, push: PushDelivery) -> str:
        # text, not a link: the device pages are for staff with permissions, not for owners
        device = push.device
        return f"{device.platform} …{device.token[-8:]}" + ("" if device.is_active else " (inactive)")

    def has_add_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        return True  # shown only inside a notification the user may see


@admin.register(Notification)
class NotificationAdmin(RecordsOnly, admin.ModelAdmin):
    """The notification log, written from events. Staff users without model permissions (branch owners)
    see their own."""

    list_display = ("created_at", "recipient", "kind", "title", "status", "attempts", "provider_message_id")
    list_filter = ("kind", "status")
    search_fields = ("title", "body", "recipient__username", "key", "event_id")
    list_select_related = ("recipient",)
    readonly_fields = [f.name for f in Notification._meta.fields]
    inlines = [PushDeliveryInline]

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request, obj=None):
        if super().has_view_permission(request, obj):
            return True
        return request.user.is_active and request.user.is_staff and (obj is None or obj.recipient_id == request.user.pk)

    def get_queryset(self, request):
        if request.user.has_perm("notifications.view_notification"):
            return super().get_queryset(request)
        return notification_list_visible_to(user=request.user)


@admin.register(DeviceToken)
class DeviceTokenAdmin(admin.ModelAdmin):
    list_display = ("user", "platform", "is_active", "token_start", "updated_at", "deactivation_reason")
    list_filter = ("platform", "is_active")
    search_fields = ("user__username", "token")
    list_select_related = ("user",)
    readonly_fields = ("created_at", "updated_at", "deactivated_at")

    @admin.display(description="token")
    def token_start(self, obj: DeviceToken) -> str:
        return obj.token[:24] + ("…" if len(obj.token) > 24 else "")
