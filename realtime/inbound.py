"""How fast a WebSocket client may send: a token bucket per connection.

A client sends a subscribe, an unsubscribe now and then and a ping every half
minute; a loop of messages makes the server parse, answer and (for a subscribe) read
the database for each. Each connection gets REALTIME_WS_MAX_MESSAGES_PER_SECOND
messages a second, with a burst of as many; past that the consumer says so and closes
the socket with 4008 (RFC 6455's 1008 "policy violation", in the application's range).
A counter per connection needs no shared state: the limit on streams per user
(realtime.hub) bounds what one user can send in all. Hand-written rather than a
rate-limit library: one connection's bucket is a dozen lines and no I/O.

How large a message may be: MessageSizeLimit, below."""

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings


class MessageRate:
    def __init__(self, per_second: float) -> None:
        self.rate = float(per_second)
        self.capacity = max(1.0, self.rate)
        self.tokens = self.capacity
        self.updated = time.monotonic()
        # Messages refused so far: the first is answered (and the socket closed), the
        # rest were already on their way and are dropped.
        self.refused = 0

    def allow(self) -> bool:
        """Take one message's token; False if the client is sending too fast, and for
        every message after that one."""
        if self.refused:
            self.refused += 1
            return False
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1.0:
            self.refused = 1
            return False
        self.tokens -= 1.0
        return True


# The socket is closed with this when a message is over REALTIME_WS_MAX_MESSAGE_BYTES:
# RFC 6455's 1009 "message too big" in the application's range (daphne's autobahn sends
# only 1000 and 3000-4999), as 4008 stands for 1008.
CLOSE_MESSAGE_TOO_BIG = 4009

ASGIMessage = dict[str, Any]


class MessageSizeLimit:
    """ASGI middleware for WebSockets: a message over REALTIME_WS_MAX_MESSAGE_BYTES never
    reaches the consumer. The socket is closed with CLOSE_MESSAGE_TOO_BIG after an `error`
    message (`message_too_large`), and the application hears a disconnect, so that it
    lets go of the connection's subscription at once.

    Checked on the message as the server hands it over, before it is decoded as JSON:
    what the server buffered is freed with the connection. (granian reads a whole
    message, up to 64 MiB, before the application sees it, and does not let that be
    configured; the bound here is what the application keeps and parses.)"""

    # Any ASGI application: channels' stubs type the app of AuthMiddlewareStack their own way.
    def __init__(self, app: Any) -> None:
        self.app: Callable[..., Awaitable[None]] = app

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[ASGIMessage]],
        send: Callable[[ASGIMessage], Awaitable[None]],
    ) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        limit = settings.REALTIME_WS_MAX_MESSAGE_BYTES
        closed = False

        async def bounded_receive() -> ASGIMessage:
            nonlocal closed
            message = await receive()
            if message["type"] == "websocket.receive" and not closed and _over(message, limit):
                closed = True
                detail = f"Messages are at most {limit} bytes; closing."
                await send({"type": "websocket.send", "text": json.dumps(
                    {"type": "error", "code": "message_too_large", "detail": detail})})
                await send({"type": "websocket.close", "code": CLOSE_MESSAGE_TOO_BIG})
                return {"type": "websocket.disconnect", "code": CLOSE_MESSAGE_TOO_BIG}
            return message

        async def guarded_send(message: ASGIMessage) -> None:
            # Once closed here, what the application still sends has nowhere to go.
            if not closed:
                await send(message)

        await self.app(scope, bounded_receive, guarded_send)


def _over(message: ASGIMessage, limit: int) -> bool:
    payload = message.get("bytes")
    if payload is not None:
        return len(payload) > limit
    text = message.get("text") or ""
    # A character is 1 to 4 bytes in UTF-8: encode only a text near the limit.
    if len(text) > limit:
        return True
    if len(text) * 4 <= limit:
        return False
    return len(text.encode("utf-8", "surrogatepass")) > limit
