from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self) -> None:
        # The failed-login counter, the OpenAPI auth extension, a session's credential id at
        # login, and the token cache's tombstone for a deleted token (authentication's
        # post_delete receiver: a stream trusts a cached "yes" only because of it).
        from accounts import authentication, credentials, login_throttle, schema  # noqa: F401
        from core.fast_path import register_neutral_middleware

        # It only notes the request's session key: a fast answer (core.fast_path) lacks nothing.
        register_neutral_middleware("accounts.credentials.CredentialInUseMiddleware")
