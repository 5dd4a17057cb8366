from django.apps import AppConfig


class WebConfig(AppConfig):
    """The pages people use (channel, studio, notification bell), built on the client
    kit in static/web/kit/, which frontend teams can copy."""

    name = "web"
    verbose_name = "Pages"
