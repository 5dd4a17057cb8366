"""What one client may hold open in a web worker process, before anyone authenticated.

A request is open from its first byte to its last: one that sends its body slowly, an
SSE stream, a WebSocket. Everything else that bounds a client counts requests it made
(throttles) or streams a user holds (realtime.hub): a client without credentials that
opens requests and keeps them open was bounded only by the server's backpressure, which
is shared by everyone. Here each client (core.client.client_identity: an address, an
IPv6 network) may have WEB_MAX_OPEN_PER_CLIENT requests and WebSockets open at once in
this process; past that an HTTP request is answered 429 and a WebSocket handshake is
refused (403), before anything is read.

Per process and exact, with no I/O: a count in memory, taken and given back around the
request. The stack has a few worker processes, so a client's bound is that many times
the setting; a shared count in Redis would cost a round trip on every request.
"""

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

from core.body_limit import send_problem
from core.client import ScopeRequest, client_identity

ASGIApp = Callable[..., Awaitable[None]]
ASGIMessage = dict[str, Any]


def scope_client(scope: dict[str, Any]) -> str:
    """The client identity of an ASGI connection, as the throttles see it."""
    return client_identity(ScopeRequest(scope))


async def _refuse(scope: dict[str, Any], send: Callable[[ASGIMessage], Awaitable[None]], limit: int) -> None:
    if scope["type"] == "websocket":
        # Closing before accepting answers the handshake with 403.
        await send({"type": "websocket.close", "code": 1008})
        return
    detail = f"This client has {limit} requests open, the most one client may hold at once; try again when one ends."
    await send_problem(send, 429, "too_many_open", detail, ((b"retry-after", b"1"),))


class OpenRequestsPerClient:
    """ASGI middleware (outermost but for ticket redemption): see the module's docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.open: Counter[str] = Counter()

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[ASGIMessage]],
        send: Callable[[ASGIMessage], Awaitable[None]],
    ) -> None:
        limit = settings.WEB_MAX_OPEN_PER_CLIENT
        if scope["type"] not in ("http", "websocket") or limit <= 0:
            await self.app(scope, receive, send)
            return
        client = scope_client(scope)
        if self.open[client] >= limit:
            await _refuse(scope, send, limit)
            return
        self.open[client] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.open[client] -= 1
            if self.open[client] <= 0:
                del self.open[client]
