from django.contrib import admin

from messaging.models import OutboxMessage, ProcessedEvent


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):
    list_display = ("id", "event_type", "event_id", "queue", "created_at", "published_at", "publish_attempts")
    list_filter = ("event_type", "queue", ("published_at", admin.EmptyFieldListFilter))
    search_fields = ("event_id",)
    readonly_fields = [f.name for f in OutboxMessage._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ProcessedEvent)
class ProcessedEventAdmin(admin.ModelAdmin):
    list_display = ("consumer", "event_type", "event_id", "processed_at")
    list_filter = ("consumer", "event_type")
    search_fields = ("event_id",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
