from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self) -> None:
        from notifications.services import NOTIFICATION
        from realtime.schema import register_user_stream_event

        # Published on the recipient's user stream (WS /v1/ws), documented there.
        register_user_stream_event(NOTIFICATION)
