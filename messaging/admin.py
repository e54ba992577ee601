"""Operator views of the messaging backbone (superusers only): the outbox, processed events, dead letters."""

from django.contrib import admin, messages

from fitness import topology
from fitness.operator_admin import OperatorOnly, RecordsOnly
from messaging.dead_letters.operations import dead_letters_replay
from messaging.dead_letters.selection import Selection
from messaging.models import DeadLetter, OutboxMessage, ProcessedEvent
from messaging.outbox import outbox_backlog


class OutboxStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [
            ("pending", "pending (to be published)"),
            ("refused", "refused by RabbitMQ, backing off"),
            ("published", "published"),
            ("discarded", "discarded"),
        ]

    def queryset(self, request, queryset):
        match self.value():
            case "pending":
                return queryset.pending()
            case "refused":
                return queryset.failing()
            case "published":
                return queryset.filter(published_at__isnull=False)
            case "discarded":
                return queryset.filter(discarded_at__isnull=False)
        return queryset


@admin.register(OutboxMessage)
class OutboxMessageAdmin(OperatorOnly, RecordsOnly, admin.ModelAdmin):
    """The outbox; the list starts with its backlog: unpublished messages and the oldest one's age.

    Rows RabbitMQ refused show their refusals, next attempt and error; `manage.py outbox`
    retries or discards them.
    """

    list_display = ("id", "event_type", "event_id", "queue", "state", "created_at", "published_at",
                    "publish_attempts", "refusals", "next_attempt_at", "short_error")
    list_filter = (OutboxStateFilter, "event_type", "queue")
    search_fields = ("event_id", "event_type", "last_error")
    readonly_fields = [f.name for f in OutboxMessage._meta.fields] + ["state"]

    @admin.display(description="last error")
    def short_error(self, obj: OutboxMessage) -> str:
        return obj.last_error if len(obj.last_error) <= 80 else obj.last_error[:79] + "…"

    def changelist_view(self, request, extra_context=None):
        unpublished, oldest_age = outbox_backlog()
        extra_context = {**(extra_context or {}), "outbox_unpublished": unpublished, "outbox_oldest_age": oldest_age}
        return super().changelist_view(request, extra_context=extra_context)


@admin.register(ProcessedEvent)
class ProcessedEventAdmin(OperatorOnly, RecordsOnly, admin.ModelAdmin):
    list_display = ("consumer", "event_type", "event_id", "processed_at")
    list_filter = ("consumer", "event_type")
    search_fields = ("event_id",)


@admin.register(DeadLetter)
class DeadLetterAdmin(OperatorOnly, RecordsOnly, admin.ModelAdmin):
    """The dead letters' history; "Replay selected" runs the same replay as `manage.py dlq replay`."""

    list_display = ("event_type", "event_id", "queue", "status", "reason", "deaths", "last_dead_at", "short_error",
                    "replays", "replayed_at", "replayed_by")
    list_filter = ("queue", "event_type", "reason", ("replayed_at", admin.EmptyFieldListFilter),
                   ("purged_at", admin.EmptyFieldListFilter))
    search_fields = ("event_id", "event_type", "error", "consumer")
    date_hierarchy = "last_dead_at"
    readonly_fields = [f.name for f in DeadLetter._meta.fields if f.editable] + ["status"]
    actions = ["replay_selected"]

    @admin.display(description="error")
    def short_error(self, obj: DeadLetter) -> str:
        return obj.error if len(obj.error) <= 80 else obj.error[:79] + "…"

    @admin.action(description="Replay selected dead letters (each once; only those still in their .dlq)")
    def replay_selected(self, request, queryset):
        known = set(topology.queue_names())
        selected = [(queue, event_id) for queue, event_id in queryset.values_list("queue", "event_id")
                    if queue in known]
        if not selected:
            self.message_user(request, "None of the selected dead letters belongs to a known work queue.",
                              messages.WARNING)
            return
        report = dead_letters_replay(
            selection=Selection(
                queues=tuple(sorted({queue for queue, _ in selected})), only=frozenset(selected),
                event_ids=frozenset(event_id for _, event_id in selected),
            ),
            replayed_by=request.user.get_username() + " (admin)",
        )
        replayed = report.count("replayed")
        if replayed:
            self.message_user(request, f"Replayed {replayed} dead letter(s) to their work queues.", messages.SUCCESS)
        if report.not_found:
            self.message_user(
                request,
                f"{len(report.not_found)} not in a dead-letter queue any more (already replayed or purged): "
                f"{', '.join(report.not_found[:10])}{' …' if len(report.not_found) > 10 else ''}",
                messages.WARNING,
            )
        if report.skipped:
            self.message_user(request, f"{report.skipped} cannot be replayed (not an event envelope).",
                              messages.WARNING)
        if report.error:
            self.message_user(request, f"The replay stopped early: {report.error}", messages.ERROR)
