"""The operator's admin of the audit trail (superusers only): the event log and the timeline page
(/admin/audit/eventlogentry/timeline/?q=<task id | event id | correlation id>)."""

from django.contrib import admin
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from audit.models import EventLogEntry
from audit.timeline import NotFound, timeline_for
from fitness.operator_admin import OperatorOnly, PermanentRecords


@admin.register(EventLogEntry)
class EventLogEntryAdmin(OperatorOnly, PermanentRecords, admin.ModelAdmin):
    """Every event, as the audit subscriber recorded it; each row links to its timeline."""

    list_display = ("recorded_at", "event_type", "schema_version", "producer", "task_id", "correlation_id",
                    "timeline_link")
    list_filter = ("event_type", "producer")
    search_fields = ("=event_id", "=correlation_id", "=task_id")
    date_hierarchy = "recorded_at"
    readonly_fields = [f.name for f in EventLogEntry._meta.fields]

    @admin.display(description="timeline")
    def timeline_link(self, obj: EventLogEntry) -> str:
        url = reverse("admin:audit_timeline")
        return format_html('<a href="{}?q={}">timeline</a>', url, obj.task_id or obj.event_id)

    def get_urls(self):
        return [path("timeline/", self.admin_site.admin_view(self.timeline_view), name="audit_timeline"),
                *super().get_urls()]

    def timeline_view(self, request):
        if not self.has_view_permission(request):
            return self.admin_site.login(request) if not request.user.is_authenticated else \
                TemplateResponse(request, "admin/audit/timeline.html", {"forbidden": True}, status=403)
        query = request.GET.get("q", "").strip()
        context = {**self.admin_site.each_context(request), "title": "Timeline", "query": query,
                   "opts": self.model._meta}
        if query:
            try:
                timeline = timeline_for(query)
            except NotFound as exc:
                context["error"] = str(exc)
            else:
                start = timeline.started_at
                context["timeline"] = timeline
                context["rows"] = [(step, (step.at - start).total_seconds() * 1000) for step in timeline.steps]
        return TemplateResponse(request, "admin/audit/timeline.html", context, status=404 if "error" in context
                                else 200)
