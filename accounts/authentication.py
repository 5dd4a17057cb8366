from knox.auth import TokenAuthentication
from rest_framework.authentication import SessionAuthentication


class BearerTokenAuthentication(TokenAuthentication):
    """`Authorization: Bearer <token>`; tokens are stored hashed by django-rest-knox.
    A 401 carries `WWW-Authenticate: Bearer` (the prefix is set in REST_KNOX)."""


class ReadOnlySessionAuthentication(SessionAuthentication):
    """The session cookie without the CSRF check, for POST endpoints that only read
    (batch lookups): the seed's VideoMetadataUpdater sends neither a token nor a
    CSRF token, and a forged cross-site read changes nothing."""

    def enforce_csrf(self, request):  # type: ignore[no-untyped-def]
        return None
