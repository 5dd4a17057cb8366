"""No server banner: responses do not say which server software answers.

granian adds `Server: granian` to every response the application sends without a
Server header of its own (`entry(SERVER).or_insert`), so the application sends one,
empty: granian keeps it as it is, and the answer names nothing (a made-up name would
be a banner of its own; daphne, in development, likewise keeps the application's).

A WebSocket refused before its handshake (origin, ticket, per-client bound) is
answered by the server itself with a 403 that names it; where the server offers the
ASGI denial response (`websocket.http.response`, as granian does), that 403 is sent
from here instead, with the same empty header. An accepted handshake (101) carries
no Server header from granian.
"""

from typing import Any

from core.body_limit import ASGIApp

SERVER_HEADER = (b"server", b"")


def _unnamed(headers: Any) -> list[tuple[bytes, bytes]]:
    return [(name, value) for name, value in headers or () if name.lower() != b"server"] + [SERVER_HEADER]


class NoServerBanner:
    """Outermost ASGI middleware: every answer's Server header is empty."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await self.app(scope, receive, self._http_send(send))
        elif scope["type"] == "websocket" and "websocket.http.response" in scope.get("extensions", {}):
            await self.app(scope, receive, self._websocket_send(send))
        else:
            await self.app(scope, receive, send)

    @staticmethod
    def _http_send(send: Any) -> Any:
        async def unnamed_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": _unnamed(message.get("headers"))}
            await send(message)

        return unnamed_send

    @staticmethod
    def _websocket_send(send: Any) -> Any:
        handshake = "pending"  # then "accepted", or "refused" (by a denial response)

        async def unnamed_send(message: dict[str, Any]) -> None:
            nonlocal handshake
            if message["type"] == "websocket.accept":
                handshake = "accepted"
            elif message["type"] == "websocket.close" and handshake == "pending":
                # A refusal of the handshake: the 403 the server would send, unnamed. The
                # close still goes to the server after it: granian ends the connection's
                # pending receive (websocket.disconnect) only on a close; without it the
                # refused consumer would wait for ever.
                handshake = "refused"
                await send({"type": "websocket.http.response.start", "status": 403, "headers": _unnamed([])})
                await send({"type": "websocket.http.response.body", "body": b""})
            elif message["type"] == "websocket.http.response.start":
                message = {**message, "headers": _unnamed(message.get("headers"))}
            await send(message)

        return unnamed_send
