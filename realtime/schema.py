"""The streaming endpoints in the OpenAPI schema. SSE is a plain async Django view
and WebSockets are not HTTP operations, so drf-spectacular cannot see them: this
hook describes them (the WebSockets as GET upgrade requests).

realtime knows how a stream is framed, not what any app sends on it: an app that
serves streams registers their paths (register_stream_paths), and one that publishes
on the user's stream registers its event type (register_user_stream_event), in its
AppConfig.ready()."""

from collections.abc import Callable
from typing import Any

from core import metrics

PROBLEM = {"$ref": "#/components/schemas/ProblemDetails"}


def problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/problem+json": {"schema": PROBLEM}}}


TICKET = {
    "name": "ticket", "in": "query", "required": False, "schema": {"type": "string"},
    "description": "Single-use ticket from POST /v1/realtime/tickets, for clients that cannot send a cookie or header.",
}

UPGRADE_REQUIRED = {
    **problem("Asked over plain HTTP, without `Upgrade: websocket`."),
    "headers": {"Upgrade": {"schema": {"type": "string", "enum": ["websocket"]}, "description": "The protocol to use."}},
}

# Channels' denial of a handshake: no problem document, the connection is not upgraded.
ORIGIN_REFUSED = {"description": "A WebSocket handshake from an origin that is not this one or a trusted one."}

TOO_MANY_STREAMS = {
    **problem(
        "You hold `REALTIME_MAX_STREAMS_PER_USER` (default 20) streams open already, SSE and "
        "WebSocket together, in all processes (`too_many_streams`). Close one, or retry after `Retry-After`."
    ),
    "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}},
}

# What every WebSocket of realtime.consumers.StreamConsumer speaks.
WEBSOCKET = (
    "WebSocket (send `Upgrade: websocket`). Client messages: `{\"type\": \"subscribe\", \"since\": <event id>}`, "
    "`{\"type\": \"unsubscribe\"}`, `{\"type\": \"ping\"}`. Server messages: `subscribed`, `pong`, "
    "`{\"type\": <event type>, \"id\": <event id>, \"data\": {...}}`, `{\"type\": \"resync\"}` and "
    "`{\"type\": \"error\", \"code\", \"detail\"}`. Close codes: 4401 not authenticated, 4403 not allowed, "
    "4000 maximum connection lifetime reached (reconnect), 4429 the user holds `REALTIME_MAX_STREAMS_PER_USER` "
    "(default 20) streams open already (error `too_many_streams`), 4008 more than "
    "`REALTIME_WS_MAX_MESSAGES_PER_SECOND` (default 10, a burst of as many) messages a second (error "
    "`too_many_messages`). Authenticates with the session cookie or `?ticket=`. The handshake's `Origin` must be "
    "this API's origin or a trusted one (`CSRF_TRUSTED_ORIGINS`, `CORS_ALLOWED_ORIGINS`), scheme, host and port "
    "exactly; any other is refused with 403 before the upgrade."
)

_stream_paths: list[Callable[[], dict[str, Any]]] = []
_user_stream_events: set[str] = set()


def register_stream_paths(paths: Callable[[], dict[str, Any]]) -> None:
    """`paths()` answers OpenAPI path items of an app's stream endpoints."""
    if paths not in _stream_paths:
        _stream_paths.append(paths)


def register_user_stream_event(event_type: str) -> None:
    """An event type published on `user:<id>` streams (documented on WS /v1/ws, and
    counted from 0 in the metrics)."""
    _user_stream_events.add(event_type)
    metrics.register_event_type("user", event_type)


def add_stream_endpoints(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    paths = result.setdefault("paths", {})
    for app_paths in _stream_paths:
        paths.update(app_paths())
    events = " and ".join(f"`{event_type}`" for event_type in sorted(_user_stream_events))
    paths["/v1/ws"] = {
        "get": {
            "operationId": "v1_ws", "tags": ["realtime"], "summary": "WebSocket of the caller's own events",
            "description": WEBSOCKET + (f" Events: {events}." if events else ""),
            "parameters": [TICKET],
            "responses": {"101": {"description": "Switching protocols."}, "403": ORIGIN_REFUSED, "426": UPGRADE_REQUIRED},
        }
    }
    return result
