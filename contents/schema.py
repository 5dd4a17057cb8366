"""The channel streams in the OpenAPI schema (SSE and WebSocket of a channel's
events), registered with realtime.schema in ContentsConfig.ready(): realtime knows how
a stream is framed, contents knows its paths and what its events carry."""

from typing import Any

from realtime.event_ids import MAX_EVENT_ID
from realtime.schema import ORIGIN_REFUSED, TICKET, TOO_MANY_STREAMS, UPGRADE_REQUIRED, WEBSOCKET, problem

EVENT_FIELDS = (
    "Every event: `content_id, status, processing_status, progress, estimated_completion, error_message, "
    "version, timestamp`; `processing_complete` adds `ai_gen_metadata`, and so does `content_status_update` while "
    "`summarizing` or `qa_generating` (the partial result so far: the growing `summary`, the `qa_list` pairs done). "
    "Clients keep the highest `version`."
)

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


def stream_paths() -> dict[str, Any]:
    channel_id = {"name": "channel_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
    return {
        "/api/contents/{channel_id}/events": {
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
                    TICKET,
                ],
                "responses": {
                    "200": {"description": "The event stream.", "content": {"text/event-stream": {"schema": SSE_EVENT}}},
                    "400": problem("A Last-Event-ID that is not an event id."),
                    "401": problem("No session, ticket or token."),
                    "404": problem("No such channel, or you may not read it."),
                    "429": TOO_MANY_STREAMS,
                },
            }
        },
        "/api/contents/{channel_id}/ws": {
            "get": {
                "operationId": "api_contents_ws", "tags": ["contents"], "summary": "WebSocket of a channel's events",
                "description": WEBSOCKET + " `subscribe` may carry `channel_id` (must match the URL) and `user_id` (ignored). " + EVENT_FIELDS,
                "parameters": [channel_id, TICKET],
                "responses": {
                    "101": {"description": "Switching protocols."},
                    "403": ORIGIN_REFUSED,
                    "404": problem("The path names no channel (channel_id is not a UUID)."),
                    "426": UPGRADE_REQUIRED,
                },
            }
        },
    }
