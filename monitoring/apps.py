from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"

    def ready(self) -> None:
        from monitoring import rules

        rules.fault_rules()  # a broken MONITORING_FAULT_RULES fails at start, not at the first reading
