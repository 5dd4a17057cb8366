"""Server-Sent Events for a stream, as a Django async view returning an async
StreamingHttpResponse (daphne cancels the generator when the client leaves).

Framing: plain `message` events by default (the seed's `eventSource.onmessage` only
sees those); `?named=true` adds `event: <type>`. Every event has `id:`; `data:` is
the event's payload with its `type` beside it. A heartbeat comment carrying the
stream's latest id goes out every REALTIME_HEARTBEAT_SECONDS."""

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DatabaseError
from django.http import StreamingHttpResponse

from realtime.delivery import Delivery, Resync, StreamCursor, latest_seq
from realtime.streams import access_group, group_name

logger = logging.getLogger(__name__)


def sse_frame(delivery: Delivery, *, named: bool) -> str:
    lines = [f"id: {delivery.id}"]
    if named:
        lines.append(f"event: {delivery.type}")
    lines.append("data: " + json.dumps({"type": delivery.type, **delivery.data}, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"


def resync_frame(latest: int, *, named: bool) -> str:
    return sse_frame(Delivery(latest, "resync", {"last_event_id": latest}), named=named)


async def event_stream(stream: str, *, user_id: str, last_event_id: int | None, named: bool) -> AsyncIterator[str]:
    """The frames of one SSE connection. It ends (closing the response, so that
    EventSource reconnects with Last-Event-ID) on lifetime, revoke, resync or any
    unexpected error; it never stays open and mute. A database error while reading
    the table is not an end: the cursor stays where it was and the next heartbeat
    reads again (a reconnect would meet the same database, and EventSource gives up
    on an error response)."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    groups = [group_name(stream), access_group(user_id)]
    # Join the groups before reading the table, so nothing committed in between is missed.
    for group in groups:
        await layer.group_add(group, channel)
    try:
        yield f"retry: {settings.SSE_RETRY_MILLISECONDS}\n\n"
        start = await latest_seq(stream) if last_event_id is None else last_event_id
        cursor = StreamCursor(stream, start)
        try:
            for delivery in await cursor.catch_up():
                yield sse_frame(delivery, named=named)
        except Resync as resync:
            cursor.last_sent = resync.latest
            yield resync_frame(resync.latest, named=named)
        yield f": connected at {cursor.last_sent}\n\n"
        deadline = time.monotonic() + settings.REALTIME_MAX_CONNECTION_SECONDS
        # The heartbeat is due a period after the last write, whatever else arrived.
        last_write = time.monotonic()
        while time.monotonic() < deadline:
            quiet_for = settings.REALTIME_HEARTBEAT_SECONDS - (time.monotonic() - last_write)
            try:
                if quiet_for <= 0:
                    raise TimeoutError
                message = await asyncio.wait_for(layer.receive(channel), timeout=quiet_for)
            except TimeoutError:
                last_write = time.monotonic()
                # Quiet for a while: read the table once, which also delivers any row
                # whose wake-up never came (its sender died between commit and send, or
                # Redis was away when it was committed).
                try:
                    for delivery in await cursor.catch_up():
                        yield sse_frame(delivery, named=named)
                except Resync as resync:
                    yield resync_frame(resync.latest, named=named)
                    return
                except DatabaseError:
                    logger.warning("SSE %s: the table could not be read; trying again at the next heartbeat", stream, exc_info=True)
                yield f": heartbeat {cursor.last_sent}\n\n"
                continue
            if message.get("type") == "stream.revoke" and message.get("user_id") == user_id:
                return
            if message.get("type") != "stream.event" or message.get("stream") != stream:
                continue
            try:
                for delivery in await cursor.on_wakeup(message):
                    last_write = time.monotonic()
                    yield sse_frame(delivery, named=named)
            except Resync as resync:
                yield resync_frame(resync.latest, named=named)
                return
            except DatabaseError:
                logger.warning("SSE %s: a gap could not be filled; trying again at the next heartbeat", stream, exc_info=True)
    except Exception:
        # Ending the response is what makes EventSource reconnect with Last-Event-ID.
        logger.exception("SSE %s: ending the stream after an unexpected error", stream)
    finally:
        for group in groups:
            await layer.group_discard(group, channel)


def sse_response(stream: str, *, user_id: str, last_event_id: int | None, named: bool) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        event_stream(stream, user_id=user_id, last_event_id=last_event_id, named=named), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
