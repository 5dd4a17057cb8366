"""Short-lived single-use tickets for EventSource and WebSocket URLs, which cannot
carry an Authorization header. A long-lived token never travels in a URL.

A ticket is spent by the first request that carries it, whatever becomes of that
request: TicketRedemptionMiddleware redeems it at the edge of the ASGI application,
before anything may refuse the request (a bad Last-Event-ID, a wrong method, a
foreign WebSocket Origin, a body over its limit), and leaves the outcome in the scope
for whoever authenticates (realtime.auth). A URL that was logged or leaked is worth
nothing once it has been used."""

import functools
import secrets
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from core.cache import UNREACHABLE

PREFIX = "realtime:ticket:"
# Where the redemption's outcome travels in the ASGI scope: the user id, None (unknown,
# expired or used) or the error that kept Redis from answering.
SCOPE_KEY = "realtime.ticket"
# Every ticket in a URL is spent; more than this many in one is not a client of ours.
MAX_TICKETS_PER_REQUEST = 4


@functools.cache
def _redis() -> redis.Redis:
    """One client per process, not a new connection per ticket; its pool makes a
    burst of tickets (a reconnect storm) wait for a connection instead of failing
    past redis-py 8's default of 100 (MaxConnectionsError)."""
    pool = redis.BlockingConnectionPool.from_url(
        settings.REDIS_URL, max_connections=50, timeout=5, socket_connect_timeout=2, socket_timeout=5
    )
    return redis.Redis(connection_pool=pool)


def ticket_issue(*, user_id: uuid.UUID | int) -> tuple[str, datetime]:
    ticket = secrets.token_urlsafe(32)
    ttl = settings.REALTIME_TICKET_TTL
    _redis().set(PREFIX + ticket, str(user_id), ex=ttl)
    return ticket, timezone.now() + timedelta(seconds=ttl)


def ticket_redeem(ticket: str) -> str | None:
    """The user id the ticket was issued to, once; None if unknown, expired or used."""
    if not ticket or len(ticket) > 100:
        return None
    user_id = _redis().getdel(PREFIX + ticket)
    if not user_id:
        return None
    return user_id.decode() if isinstance(user_id, bytes) else user_id


def tickets_in_query(query_string: bytes) -> list[str]:
    """The `ticket` values of a raw query string, as Django's QueryDict would read them."""
    if b"ticket" not in query_string:
        return []
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
    return [value for key, value in pairs if key == "ticket"][:MAX_TICKETS_PER_REQUEST]


# Any ASGI application (scope, receive, send): channels' stubs type the scope of
# ProtocolTypeRouter as a TypedDict of their own.
ASGIApp = Callable[..., Awaitable[None]]


class TicketRedemptionMiddleware:
    """Outermost ASGI middleware: redeem the tickets a request's URL carries before
    anything else looks at the request (see the module's docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] in ("http", "websocket"):
            tickets = tickets_in_query(scope.get("query_string", b""))
            if tickets:
                scope = {**scope, SCOPE_KEY: await _redeem_all(tickets)}
        await self.app(scope, receive, send)


async def _redeem_all(tickets: list[str]) -> str | Exception | None:
    """The first ticket's user id; every one of them is spent."""
    try:
        user_ids = await sync_to_async(lambda: [ticket_redeem(t) for t in tickets], thread_sensitive=False)()
    except UNREACHABLE as error:
        # Raised where the request authenticates, which answers 503 (core.middleware).
        return error
    return user_ids[0]
