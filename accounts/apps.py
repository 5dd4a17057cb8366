from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self) -> None:
        # The failed-login counter, the OpenAPI auth extension, a session's credential id at login.
        from accounts import credentials, login_throttle, schema  # noqa: F401
