from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"
    verbose_name = "Messaging (events, outbox, consumers)"

    def ready(self) -> None:
        from messaging import checks  # noqa: F401  (registers the retention checks)
