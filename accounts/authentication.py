from knox.auth import TokenAuthentication


class BearerTokenAuthentication(TokenAuthentication):
    """`Authorization: Bearer <token>`; tokens are stored hashed by django-rest-knox.
    A 401 carries `WWW-Authenticate: Bearer` (the prefix is set in REST_KNOX)."""
