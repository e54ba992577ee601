from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self) -> None:
        from accounts.signals import signed_out_everywhere
        from notifications.services import device_unregister_all

        def stop_pushes_to_every_device(sender, user, **kwargs) -> None:
            device_unregister_all(user=user, reason="signed out everywhere")

        signed_out_everywhere.connect(stop_pushes_to_every_device, weak=False,
                                      dispatch_uid="notifications.stop_pushes_to_every_device")
