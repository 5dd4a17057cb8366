"""Which pages may open a WebSocket: the API's own origin, and the origins the CSRF
check trusts (CSRF_TRUSTED_ORIGINS, which carries CORS_ALLOWED_ORIGINS), each matched
on scheme, host and port exactly, as Django's CSRF check matches a POST's Origin.

Channels' AllowedHostsOriginValidator, used before, compared the Origin's host with
ALLOWED_HOSTS only: a page on any port or scheme of an allowed host (another app on
localhost:5000, plain http beside https) could open a socket with the user's cookie.
A browser always sends Origin on a WebSocket handshake; one without it (or `null`) is
refused, as before. A refused handshake is closed before it is accepted (HTTP 403)."""

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

if TYPE_CHECKING:
    from channels.consumer import _ChannelScope  # the stubs' scope of a consumer (type-check only)

DEFAULT_PORTS = {"http": 80, "https": 443}
Origin = tuple[str, str, int]


def parse_origin(value: str) -> Origin | None:
    """(scheme, host, port) of an http(s) origin, the port made explicit; None if it is not one."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/") or parts.query:
        return None
    return parts.scheme, parts.hostname.lower(), port or DEFAULT_PORTS[parts.scheme]


def _headers(scope: Mapping[str, Any]) -> dict[bytes, list[bytes]]:
    headers: dict[bytes, list[bytes]] = {}
    for name, value in scope.get("headers", []):
        headers.setdefault(name.lower(), []).append(value)
    return headers


def own_origin(scope: Mapping[str, Any], headers: dict[bytes, list[bytes]]) -> Origin | None:
    """The origin the handshake was addressed to (Host, validated as Django validates
    it), with the scheme the client used (wss, or https as a trusted proxy says)."""
    hosts = headers.get(b"host", [])
    if len(hosts) != 1:
        return None
    host = hosts[0].decode("latin1")
    domain, _ = split_domain_port(host)
    allowed = settings.ALLOWED_HOSTS or ([".localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else [])
    if not domain or not validate_host(domain, allowed):
        return None
    secure = scope.get("scheme") == "wss"
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        name, value = proxy_header
        forwarded = headers.get(name.removeprefix("HTTP_").lower().replace("_", "-").encode(), [])
        secure = secure or (len(forwarded) == 1 and forwarded[0].decode("latin1").split(",")[0].strip() == value)
    return parse_origin(f"{'https' if secure else 'http'}://{host}")


def _trusted(origin: Origin) -> bool:
    scheme, host, port = origin
    for entry in settings.CSRF_TRUSTED_ORIGINS:
        if "*" in entry:
            # Django's CSRF wildcard: "https://*.example.com" covers example.com's subdomains.
            trusted = parse_origin(entry.replace("://*", "://", 1))
            if trusted and (trusted[0], trusted[2]) == (scheme, port) and is_same_domain(host, trusted[1]):
                return True
        elif parse_origin(entry) == origin:
            return True
    return False


def origin_allowed(scope: Mapping[str, Any]) -> bool:
    headers = _headers(scope)
    values = headers.get(b"origin", [])
    if len(values) != 1:
        return False
    origin = parse_origin(values[0].decode("latin1"))
    if origin is None:
        return False
    return origin == own_origin(scope, headers) or _trusted(origin)


class ExactOriginValidator:
    """ASGI middleware for WebSocket routes: refuses a handshake from any other origin."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: "_ChannelScope", receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
