from typing import TYPE_CHECKING

from drf_spectacular.extensions import OpenApiAuthenticationExtension

if TYPE_CHECKING:
    from drf_spectacular.openapi import AutoSchema


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: "AutoSchema") -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "A token from POST /v1/auth/token."}


class ReadOnlySessionScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ReadOnlySessionAuthentication"
    name = "cookieAuthNoCsrf"

    def get_security_definition(self, auto_schema: "AutoSchema") -> dict[str, str]:
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}
