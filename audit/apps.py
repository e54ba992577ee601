from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail (event log, timelines)"
    default_auto_field = "django.db.models.BigAutoField"
