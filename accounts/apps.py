from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self) -> None:
        from accounts import login_throttle, schema  # noqa: F401  (the failed-login counter, the OpenAPI auth extension)
