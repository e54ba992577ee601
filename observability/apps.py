from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "observability"
    verbose_name = "Observability (metrics, queue depths)"

    def ready(self) -> None:
        from observability import exporter

        exporter.connect_worker_signal()
