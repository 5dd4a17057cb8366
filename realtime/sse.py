"""Server-Sent Events for a stream, as a Django async view returning an async
StreamingHttpResponse (daphne cancels the generator when the client leaves).

Framing: plain `message` events by default (the seed's `eventSource.onmessage` only
sees those); `?named=true` adds `event: <type>`. Every event has `id:`; `data:` is
the event's payload with its `type` beside it. A heartbeat comment carrying the
stream's latest id sent goes out every REALTIME_HEARTBEAT_SECONDS. Events reach the
connection through its process's hub (realtime/hub.py)."""

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpResponseBase, StreamingHttpResponse

from core import metrics
from core.errors import problem_response
from core.health import draining
from realtime.auth import credential_holder
from realtime.credentials import Credential
from realtime.delivery import Delivery, Resync, StreamCursor, subscribe_position
from realtime.hub import (
    CREDENTIAL_REVOKED,
    DRAINING,
    HEARTBEAT,
    LIFETIME,
    REVOKE,
    ServerDraining,
    StreamHub,
    Subscription,
    TooManyStreams,
    deliveries_for,
    get_hub,
)

# metrics.event_delivered("sse")'s child, looked up once (a label lookup per delivery
# per connection was a twelfth of an SSE delivery's CPU).
DELIVERED = metrics.EVENTS_DELIVERED.labels("sse")

# A stream closes when its tab or its lifetime ends; a client refused for holding too
# many polls until one has.
TOO_MANY_STREAMS_RETRY_AFTER = 10

logger = logging.getLogger(__name__)


def credentials_revoked_response() -> HttpResponseBase:
    response = problem_response(
        401, "The credentials this stream was opened with were revoked or have expired; log in again.",
        code="not_authenticated",
    )
    response["WWW-Authenticate"] = "Bearer"
    return response


def sse_frame(delivery: Delivery, *, named: bool) -> bytes:
    """The event's frame, built and encoded once per event whatever the number of
    connections that write it (Delivery caches it), as the WebSocket's text is."""
    return delivery.sse_named_message if named else delivery.sse_message


def resync_frame(latest: int, *, named: bool) -> bytes:
    return sse_frame(Delivery(latest, "resync", {"last_event_id": latest}), named=named)


async def event_stream(
    stream: str, *, user_id: str, last_event_id: int | None, named: bool, subscription: Subscription | None = None,
    lifetime: float | None = None,
) -> AsyncGenerator[Any, None]:  # str: a control line; bytes: an event's frame, as encoded once for all
    """The frames of one SSE connection. It ends (closing the response, so that
    EventSource reconnects with Last-Event-ID) on lifetime, revoke, resync or any
    unexpected error; it never stays open and mute. A database error while reading
    the table is not an end: the cursor stays where it was and the hub reads again at
    its next heartbeat (a reconnect would meet the same database, and EventSource
    gives up on an error response). `lifetime` shortens REALTIME_MAX_CONNECTION_SECONDS
    (a token that expires sooner).

    It waits on its inbox alone, as a WebSocket's pump does: the hub puts a HEARTBEAT
    there when the connection has been quiet for a period, and a timer set once puts
    LIFETIME there when its time is up (no timeout per event per connection, which was
    a quarter of an SSE delivery's CPU)."""
    hub = get_hub()
    if subscription is None:
        subscription = await hub.attach(user_id)
    metrics.stream_opened("sse")
    # Why it ends (core.metrics.STREAM_END_REASONS): unless set below, its client left
    # (the server cancels the generator).
    ending = "client_gone"
    ends = None
    try:
        # Read by the hub before the table is read, so nothing committed in between is missed.
        await hub.read(subscription, stream)
        yield f"retry: {settings.SSE_RETRY_MILLISECONDS}\n\n"
        start, missed = await subscribe_position(stream, last_event_id)
        metrics.replay_requested("sse", last_event_id)
        cursor = StreamCursor(stream, start)
        try:
            for delivery in await cursor.catch_up() if missed else ():
                DELIVERED.inc()
                yield sse_frame(delivery, named=named)
        except Resync as resync:
            cursor.last_sent = resync.latest
            metrics.resynced("sse")
            yield resync_frame(resync.latest, named=named)
        subscription.cursor = cursor
        yield f": connected at {cursor.last_sent}\n\n"
        seconds = float(settings.REALTIME_MAX_CONNECTION_SECONDS)
        at_deadline = "lifetime" if lifetime is None or lifetime >= seconds else "credential_expired"
        ends = asyncio.get_running_loop().call_later(
            seconds if lifetime is None else max(0.0, min(lifetime, seconds)),
            subscription.inbox.put_nowait, (LIFETIME, None, None),
        )
        subscription.last_write = time.monotonic()
        hub.beat_while_quiet(subscription)
        while True:
            item = await subscription.inbox.get()
            kind = item[0]
            if kind == HEARTBEAT:
                yield f": heartbeat {cursor.last_sent}\n\n"
                continue
            if kind == LIFETIME:
                ending = at_deadline
                return
            if kind == REVOKE:
                # Draining: the response ends, and EventSource reconnects (through the load
                # balancer, to another host) with Last-Event-ID.
                ending = {CREDENTIAL_REVOKED: "credential_revoked", DRAINING: "shutdown"}.get(item[1], "revoked")
                return
            try:
                deliveries = await deliveries_for(cursor, item)
            except Resync as resync:
                metrics.resynced("sse")
                ending = "resync"
                yield resync_frame(resync.latest, named=named)
                return
            except DatabaseError:
                logger.warning("SSE %s: a gap could not be filled; the hub reads again at its heartbeat", stream, exc_info=True)
                metrics.delivery_dropped("table_unreadable")
                continue
            if deliveries:
                subscription.last_write = time.monotonic()
            for delivery in deliveries:
                DELIVERED.inc()
                yield sse_frame(delivery, named=named)
    except Exception:
        ending = "error"
        # Ending the response is what makes EventSource reconnect with Last-Event-ID.
        logger.exception("SSE %s: ending the stream after an unexpected error", stream)
    finally:
        if ends is not None:
            ends.cancel()
        metrics.stream_closed("sse")
        metrics.stream_ended("sse", "shutdown" if ending == "client_gone" and draining() else ending)
        await hub.detach(subscription)


class _Frames:
    """An SSE body that holds its connection's place in the hub from before the
    response starts (so that a refusal can still be a 429). Django closes a streaming
    response whether or not its body was ever iterated (a client gone before the first
    byte); close() then gives the place back, which the frames' own ending does
    otherwise (detach is idempotent)."""

    def __init__(self, frames: AsyncIterator[Any], hub: StreamHub, subscription: Subscription) -> None:
        self.frames, self.hub, self.subscription = frames, hub, subscription
        self.loop = asyncio.get_running_loop()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self.frames

    def close(self) -> None:
        # Called from a thread of the request (sync_to_async) or the loop itself.
        if not self.subscription.detached and not self.loop.is_closed():
            asyncio.run_coroutine_threadsafe(self.hub.detach(self.subscription), self.loop)


async def sse_response(
    stream: str, *, user_id: str, last_event_id: int | None, named: bool, credential: Credential | None = None,
    access_refusal: Callable[[], Awaitable[HttpResponseBase | None]] | None = None,
) -> HttpResponseBase:
    """The stream's response; a 429 problem if the user holds too many streams open, a
    401 if `credential` (what the caller authenticated with) was revoked meanwhile, and
    `access_refusal`'s answer if it has one (the app's access check), asked once the hub reads
    the stream for this connection: a revoke sent after the check was read reaches it."""
    hub = get_hub()
    try:
        subscription = await hub.attach(user_id, credential.id if credential is not None else None)
    except TooManyStreams as refused:
        refusal = problem_response(429, str(refused), code="too_many_streams")
        refusal["Retry-After"] = str(TOO_MANY_STREAMS_RETRY_AFTER)
        return refusal
    except ServerDraining:
        refusal = problem_response(503, "This server is restarting; reconnect in a moment.", code="server_draining")
        refusal["Retry-After"] = "1"
        return refusal
    lifetime = None
    if credential is not None:
        # Attached: a revocation from now on reaches the stream; one that came while it
        # was opening has committed, and is seen here.
        holder = await credential_holder(user_id, credential)
        if holder is None or holder.credential is None:
            await hub.detach(subscription)
            return credentials_revoked_response()
        lifetime = holder.credential.seconds_left()
    if access_refusal is not None:
        await hub.read(subscription, stream)
        denied = await access_refusal()
        if denied is not None:
            await hub.detach(subscription)
            return denied
    frames = event_stream(
        stream, user_id=user_id, last_event_id=last_event_id, named=named, subscription=subscription, lifetime=lifetime
    )
    response = StreamingHttpResponse(_Frames(frames, hub, subscription), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
