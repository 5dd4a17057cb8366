"""The streaming endpoints in the OpenAPI schema. SSE is a plain async Django view
and WebSockets are not HTTP operations, so drf-spectacular cannot see them: this
hook describes them (the WebSockets as GET upgrade requests)."""

from typing import Any

from realtime.event_ids import MAX_EVENT_ID

PROBLEM = {"$ref": "#/components/schemas/ProblemDetails"}
EVENT_FIELDS = (
    "Every event: `content_id, status, processing_status, progress, estimated_completion, error_message, "
    "version, timestamp`; `processing_complete` adds `ai_gen_metadata`. Clients keep the highest `version`."
)


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/problem+json": {"schema": PROBLEM}}}


# One event of the stream, as EventSource reads it (OpenAPI 3.0 has `schema` describe
# each event of a text/event-stream). `data` is JSON (realtime.delivery.Delivery.sse_data):
# the content's state beside `type`, or a resync.
SSE_EVENT = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "The event id, per stream, increasing."},
        "event": {
            "type": "string",
            "enum": ["message", "content_status_update", "processing_complete", "processing_error", "resync"],
            "description": "`message` unless `?named=true`, which names the type.",
        },
        "data": {
            "type": "string",
            # OpenAPI 3.0 has no contentSchema: the pattern pins the JSON's leading `type`.
            "pattern": '^\\{"type":"(content_status_update|processing_complete|processing_error|resync)"',
            "description": (
                "JSON: `type` first, then the content's fields (`content_id`, `version`, ...), or "
                "`last_event_id` on a `resync`."
            ),
        },
    },
    "required": ["id", "data"],
}

UPGRADE_REQUIRED = {
    **_problem("Asked over plain HTTP, without `Upgrade: websocket`."),
    "headers": {"Upgrade": {"schema": {"type": "string", "enum": ["websocket"]}, "description": "The protocol to use."}},
}


# Channels' denial of a handshake: no problem document, the connection is not upgraded.
ORIGIN_REFUSED = {"description": "A WebSocket handshake from an origin that is not this one or a trusted one."}


def add_stream_endpoints(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    channel_id = {"name": "channel_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
    ticket = {
        "name": "ticket", "in": "query", "required": False, "schema": {"type": "string"},
        "description": "Single-use ticket from POST /v1/realtime/tickets, for clients that cannot send a cookie or header.",
    }
    paths = result.setdefault("paths", {})
    paths["/api/contents/{channel_id}/events"] = {
        "get": {
            "operationId": "api_contents_events_stream",
            "tags": ["contents"],
            "summary": "Server-Sent Events of a channel",
            "description": (
                "`text/event-stream`. Each event has `id:` (per-stream, increasing) and `data:` (JSON with `type`: "
                "`content_status_update`, `processing_complete` or `processing_error`, beside the content's fields). "
                "Plain messages by default (for `EventSource.onmessage`); `?named=true` adds `event: <type>`. "
                "Reconnects replay from `Last-Event-ID` (or `?last_event_id=`); past the retention window a "
                "`resync` message says to refetch. A heartbeat comment arrives at least every 15 s. " + EVENT_FIELDS
            ),
            "parameters": [
                channel_id,
                {"name": "named", "in": "query", "required": False, "schema": {"type": "boolean"}},
                # realtime.event_ids: ASCII digits within a bigint; anything else is the 400 below.
                {"name": "last_event_id", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 0, "maximum": MAX_EVENT_ID}},
                {"name": "Last-Event-ID", "in": "header", "required": False,
                 "schema": {"type": "integer", "minimum": 0, "maximum": MAX_EVENT_ID}},
                ticket,
            ],
            "responses": {
                "200": {"description": "The event stream.", "content": {"text/event-stream": {"schema": SSE_EVENT}}},
                "400": _problem("A Last-Event-ID that is not an event id."),
                "401": _problem("No session, ticket or token."),
                "404": _problem("No such channel, or you may not read it."),
                "429": {
                    **_problem(
                        "You hold `REALTIME_MAX_STREAMS_PER_USER` (default 20) streams open already, SSE and "
                        "WebSocket together, in all processes (`too_many_streams`). Close one, or retry after `Retry-After`."
                    ),
                    "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}},
                },
            },
        }
    }
    websocket = (
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
    paths["/api/contents/{channel_id}/ws"] = {
        "get": {
            "operationId": "api_contents_ws", "tags": ["contents"], "summary": "WebSocket of a channel's events",
            "description": websocket + " `subscribe` may carry `channel_id` (must match the URL) and `user_id` (ignored). " + EVENT_FIELDS,
            "parameters": [channel_id, ticket],
            "responses": {
                "101": {"description": "Switching protocols."},
                "403": ORIGIN_REFUSED,
                "404": _problem("The path names no channel (channel_id is not a UUID)."),
                "426": UPGRADE_REQUIRED,
            },
        }
    }
    paths["/v1/ws"] = {
        "get": {
            "operationId": "v1_ws", "tags": ["realtime"], "summary": "WebSocket of the caller's own events",
            "description": websocket + " Events: `ai_job_update` and `notification`.",
            "parameters": [ticket],
            "responses": {"101": {"description": "Switching protocols."}, "403": ORIGIN_REFUSED, "426": UPGRADE_REQUIRED},
        }
    }
    return result
