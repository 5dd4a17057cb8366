"""The WebSocket side of the streams: subscribe -> subscribed, events as
`{type, id, data}`, `since` replay, `resync`, ping -> pong, unsubscribe, and
`{"type": "error"}` for a bad message with the socket kept open.

Consumers only authenticate, subscribe through the hub, read through db_read and
forward; subclasses say which stream a subscription reads."""

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from core import metrics, parsers, request_log
from core.health import draining
from core.parsers import JSONTooDeep
from realtime.auth import StreamCaller, credential_holder, session_caller, ticket_caller
from realtime.delivery import Resync, StreamCursor, subscribe_position
from realtime.event_ids import InvalidEventId, parse_event_id
from realtime.hub import (
    CREDENTIAL_REVOKED,
    DRAINING,
    REVOKE,
    ServerDraining,
    Subscription,
    TooManyStreams,
    deliveries_for,
    get_hub,
)
from realtime.inbound import CLOSE_MESSAGE_TOO_BIG, MessageRate

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_LIFETIME = 4000
# The server failed; reconnect with `since` (RFC 6455's "internal error").
CLOSE_INTERNAL_ERROR = 1011
# The user holds REALTIME_MAX_STREAMS_PER_USER streams already (HTTP's 429).
CLOSE_TOO_MANY_STREAMS = 4429
# Messages faster than REALTIME_WS_MAX_MESSAGES_PER_SECOND: RFC 6455's 1008 "policy
# violation" in the application's range (daphne's autobahn sends only 1000 and 3000-4999).
CLOSE_TOO_MANY_MESSAGES = 4008
# The process is draining (told to stop) and takes no new stream: reconnect after a
# moment, to another host (RFC 6455's 1012 "service restart" in the application's range).
CLOSE_SERVER_DRAINING = 4012


# metrics.event_delivered("ws")'s child, looked up once rather than per delivery.
DELIVERED = metrics.EVENTS_DELIVERED.labels("ws")

CREDENTIALS_REVOKED = (
    "The credentials this stream was opened with were revoked (a password change, a token revoked) or have "
    "expired; log in again."
)


class SubscriptionRefused(Exception):
    def __init__(self, code: str, detail: str, *, close: bool = False) -> None:
        super().__init__(detail)
        self.code, self.detail, self.close = code, detail, close


class StreamConsumer(AsyncJsonWebsocketConsumer):
    """Events reach the socket through its process's hub (realtime/hub.py), which
    holds the channel-layer memberships: the consumer's own channel joins no group."""

    # No channel of its own: the hub receives for the process and fills the inbox.
    # Channels would otherwise give every connection a channel and a receive loop on the
    # layer (a blocking pop on Redis per socket, ~1,000 at once for 1,000 sockets),
    # which nothing ever sends to.
    channel_layer_alias = ""

    stream: str | None = None
    cursor: StreamCursor | None = None
    subscription: Subscription | None = None
    # Why the server closes it (core.metrics.STREAM_END_REASONS); None: the client did.
    ending: str | None = None

    async def resolve_stream(self, message: dict[str, Any]) -> str:
        """The stream a subscribe message names; raise SubscriptionRefused if it names
        none this socket may ask for (the user's access is check_access's)."""
        raise NotImplementedError

    async def check_access(self, stream: str) -> None:
        """Raise SubscriptionRefused if the user may not read `stream`. Asked once the
        hub reads the stream for this connection: a revoke sent after the check was
        read reaches it, and one sent before was sent after the access it revokes had
        gone (its app writes the refusal before it tells the streams)."""

    async def connect(self) -> None:
        self.delivery_lock = asyncio.Lock()
        self.tasks: list[asyncio.Task[None]] = []
        self.inbound = MessageRate(settings.REALTIME_WS_MAX_MESSAGES_PER_SECOND)
        caller = await self._authenticate()
        self.user = caller.user
        # The handshake's access line, written when it is accepted, names the user.
        request_log.note_user(getattr(self.user, "id", None))
        await self.accept()
        if caller.credential is None:
            await self.send_error("not_authenticated", "Log in, or connect with ?ticket= from POST /v1/realtime/tickets.")
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.hub = get_hub()
        # Attached before anything is read: a revoke (a suspension, its credential
        # revoked) reaches it from now on.
        try:
            self.subscription = await self.hub.attach(str(self.user.id), caller.credential.id)
        except TooManyStreams as refused:
            await self.send_error("too_many_streams", str(refused))
            await self.close(code=CLOSE_TOO_MANY_STREAMS)
            return
        except ServerDraining:
            await self.send_error("server_draining", "This server is restarting; reconnect in a moment.")
            await self.close(code=CLOSE_SERVER_DRAINING)
            return
        # ...and one sent while it was opening is seen here: its revocation has committed.
        holder = await credential_holder(self.user.id, caller.credential)
        if holder is None:
            await self.hub.detach(self.subscription)
            self.subscription = None
            await self.send_error("credentials_revoked", CREDENTIALS_REVOKED)
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        metrics.stream_opened("ws")
        lifetime, code = float(settings.REALTIME_MAX_CONNECTION_SECONDS), CLOSE_LIFETIME
        left = holder.credential.seconds_left() if holder.credential is not None else None
        if left is not None and left < lifetime:
            # A token's stream ends when the token does; its reconnect would be refused.
            lifetime, code = max(left, 0.0), CLOSE_UNAUTHENTICATED
        self.tasks = [
            asyncio.create_task(self._close_after(lifetime, code)),
            asyncio.create_task(self._pump()),
        ]

    async def _authenticate(self) -> StreamCaller:
        caller = await ticket_caller(self.scope)
        if caller is not None:
            return caller
        return await session_caller(self.scope["session"], self.scope["user"])

    async def _close_after(self, seconds: float, code: int = CLOSE_LIFETIME) -> None:
        await asyncio.sleep(seconds)
        # Closing makes the client reconnect, which checks its authorisation again.
        self.ending = "lifetime" if code == CLOSE_LIFETIME else "credential_expired"
        await self.close(code=code)

    async def _pump(self) -> None:
        """Deliver what the hub puts in this connection's inbox. A task that died
        silently would leave the socket open and mute, so anything unexpected closes it."""
        if self.subscription is None:  # connect() attaches before it starts the pump
            raise RuntimeError("The pump started before the connection was attached to the hub.")
        try:
            while True:
                item = await self.subscription.inbox.get()
                if item[0] == REVOKE:
                    await self._leave()
                    if item[1] == DRAINING:
                        # Reopened at once by the client (4000), through the load
                        # balancer to another host, with `since`.
                        self.ending = "shutdown"
                        await self.close(code=CLOSE_LIFETIME)
                    elif item[1] == CREDENTIAL_REVOKED:
                        self.ending = "credential_revoked"
                        await self.send_error("credentials_revoked", CREDENTIALS_REVOKED)
                        await self.close(code=CLOSE_UNAUTHENTICATED)
                    else:
                        self.ending = "revoked"
                        await self.send_error("forbidden", "You may no longer read this stream.")
                        await self.close(code=CLOSE_FORBIDDEN)
                    return
                async with self.delivery_lock:
                    if self.cursor is not None:
                        await self._deliver_locked(deliveries_for(self.cursor, item))
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("WebSocket %s: closing after an unexpected error", self.stream)
            self.ending = "error"
            await self.close(code=CLOSE_INTERNAL_ERROR)

    async def disconnect(self, code: int) -> None:
        for task in getattr(self, "tasks", ()):
            task.cancel()
        if self.subscription is not None:
            metrics.stream_closed("ws")
            # A close frame the inbound limit sent never passed through this consumer; a
            # server stopping (its drain) closes what is left without a reason of ours.
            too_big = "message_too_large" if code == CLOSE_MESSAGE_TOO_BIG else None
            metrics.stream_ended("ws", self.ending or too_big or ("shutdown" if draining() else "client_gone"))
            await self.hub.detach(self.subscription)
            self.subscription = None
        self.stream, self.cursor = None, None

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        if not self.inbound.allow():
            if self.inbound.refused == 1:
                self.ending = "too_many_messages"
                await self.send_error(
                    "too_many_messages",
                    f"More than {settings.REALTIME_WS_MAX_MESSAGES_PER_SECOND:g} messages a second; closing.",
                )
                await self.close(code=CLOSE_TOO_MANY_MESSAGES)
            return
        try:
            message = parsers.loads(text_data or "")
        except JSONTooDeep as too_deep:
            await self.send_error("invalid_json", str(too_deep))
            return
        except ValueError:
            await self.send_error("invalid_json", "Messages are JSON objects with a 'type'.")
            return
        await self.receive_json(message)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict) or not isinstance(content.get("type"), str):
            await self.send_error("invalid_message", "Messages are JSON objects with a 'type'.")
            return
        kind = content["type"]
        if kind == "ping":
            await self.send_json({"type": "pong", "timestamp": timezone.now().isoformat()})
        elif kind == "subscribe":
            await self._subscribe(content)
        elif kind == "unsubscribe":
            await self._leave()
            await self.send_json({"type": "unsubscribed"})
        else:
            await self.send_error("unknown_type", f"Unknown message type '{kind}'; expected subscribe, unsubscribe or ping.")

    async def _subscribe(self, message: dict[str, Any]) -> None:
        since = message.get("since")
        if since is not None:
            try:
                # An integer, or a string as read from an X-Last-Event-ID header.
                since = parse_event_id(since)
            except InvalidEventId as invalid:
                await self.send_error("invalid_since", f"'since' is an event id. {invalid}")
                return
        try:
            stream = await self.resolve_stream(message)
        except SubscriptionRefused as refused:
            await self.send_error(refused.code, refused.detail)
            if refused.close:
                self.ending = "forbidden"
                await self.close(code=CLOSE_FORBIDDEN)
            return
        if self.subscription is None:  # connect() attaches before any message is received
            raise RuntimeError("A subscribe arrived before the connection was attached to the hub.")
        async with self.delivery_lock:
            # The hub reads the stream before the table is read: nothing committed in between is missed.
            await self.hub.read(self.subscription, stream)
            try:
                await self.check_access(stream)
            except SubscriptionRefused as refused:
                await self.hub.read(self.subscription, None)
                self.stream, self.cursor = None, None
                await self.send_error(refused.code, refused.detail)
                if refused.close:
                    self.ending = "forbidden"
                    await self.close(code=CLOSE_FORBIDDEN)
                return
            self.stream = stream
            start, missed = await subscribe_position(stream, since)
            self.cursor = StreamCursor(stream, start)
            metrics.replay_requested("ws", since)
            await self.send_json({"type": "subscribed", **self.subscribed_fields(message), "timestamp": timezone.now().isoformat()})
            if missed:
                await self._deliver_locked(self.cursor.catch_up())
            self.subscription.cursor = self.cursor

    def subscribed_fields(self, message: dict[str, Any]) -> dict[str, Any]:
        return {}

    async def _leave(self) -> None:
        if self.stream and self.subscription is not None:
            await self.hub.read(self.subscription, None)
        self.stream, self.cursor = None, None

    async def _deliver_locked(self, pending: Awaitable[Any]) -> None:
        """Send what `pending` yields for the cursor. The caller holds delivery_lock:
        subscribing and the inbox share one cursor, one at a time, so events go out in order."""
        try:
            deliveries = await pending
        except DatabaseError:
            # The cursor has not moved: the hub's next read of the table fills the gap.
            logger.warning("WebSocket %s: the table could not be read; trying again later", self.stream, exc_info=True)
            metrics.delivery_dropped("table_unreadable")
            return
        except Resync as resync:
            if self.cursor is not None:
                self.cursor.last_sent = resync.latest
            metrics.resynced("ws")
            await self.send_json({"type": "resync", "last_event_id": resync.latest})
            return
        for delivery in deliveries:
            # Serialised once per event for every connection that sends it.
            await self.send(text_data=delivery.websocket_text)
            DELIVERED.inc()

    async def send_error(self, code: str, detail: str) -> None:
        await self.send_json({"type": "error", "code": code, "detail": detail})
