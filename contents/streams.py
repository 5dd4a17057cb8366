"""A channel's live events: SSE here, the WebSocket in contents.consumers."""

import uuid
from typing import Any

from django.http import HttpRequest, HttpResponseBase

from contents import caching
from core import request_log
from core.errors import problem_response
from core.fast_path import REDIS_ERRORS, cache_key, loaded, redis_client
from realtime.access import may_read_stream
from realtime.auth import stream_caller
from realtime.event_ids import InvalidEventId, parse_event_id
from realtime.sse import sse_response
from realtime.streams import channel_stream


async def may_read_channel(user: Any, channel_id: uuid.UUID) -> bool:
    """Whether `user` may read the channel's stream: the reader cache's "yes"
    (contents.caching.reader_key) read on the event loop in one round trip, else the
    stream's rule (realtime.access; a thread and, on a miss, the database), which also
    gives every "no". The entry is the one the rule itself would read first."""
    try:
        raw = await redis_client().call("GET", cache_key(caching.reader_key(channel_id, user.id)))
    except REDIS_ERRORS:
        raw = None
    if raw is not None and loaded(raw) is True:
        return True
    return bool(await may_read_stream(user, channel_stream(channel_id)))


def _last_event_id(request: HttpRequest) -> tuple[int | None, str | None]:
    raw = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id")
    if raw in (None, ""):
        return None, None
    try:
        return parse_event_id(raw), None
    except InvalidEventId as invalid:
        quoted = raw if len(raw) <= 40 else raw[:40] + "..."
        return None, f"'{quoted}' is not an event id. {invalid}"


async def channel_events(request: HttpRequest, channel_id: uuid.UUID) -> HttpResponseBase:
    """Server-Sent Events of a channel (see realtime.sse for the framing)."""
    if request.method != "GET":
        return problem_response(405, "Only GET is allowed.", code="method_not_allowed")
    last_event_id, error = _last_event_id(request)
    if error:
        return problem_response(400, error, code="invalid", attr="Last-Event-ID")
    user, credential = await stream_caller(request)
    if credential is None:
        response = problem_response(401, "Log in, or pass a ticket from POST /v1/realtime/tickets.", code="not_authenticated")
        response["WWW-Authenticate"] = "Bearer"
        return response
    request_log.note_user(user.id)  # a ticket or a token is no session: the access line's user

    async def refusal() -> HttpResponseBase | None:
        # Asked once the hub reads the stream for this connection (realtime.sse).
        if not await may_read_channel(user, channel_id):
            return problem_response(404, "No such channel.", code="not_found")
        return None

    return await sse_response(
        channel_stream(channel_id), user_id=str(user.id), last_event_id=last_event_id,
        named=request.GET.get("named") == "true", credential=credential, access_refusal=refusal,
    )
