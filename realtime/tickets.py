"""Short-lived single-use tickets for EventSource and WebSocket URLs, which cannot
carry an Authorization header. A long-lived token never travels in a URL.

A ticket is spent by the first request that carries it, whatever becomes of that
request: TicketRedemptionMiddleware redeems it at the edge of the ASGI application,
before anything may refuse the request (a bad Last-Event-ID, a wrong method, a
foreign WebSocket Origin, a body over its limit), and leaves the outcome in the scope
for whoever authenticates (realtime.auth). A URL that was logged or leaked is worth
nothing once it has been used."""

import asyncio
import functools
import json
import secrets
import uuid
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import redis
from django.conf import settings
from django.utils import timezone
from redis.exceptions import ConnectionError as RedisConnectionError

from core.fast_redis import LeanClient, RedisPyClient, client_for
from realtime.credentials import Credential

PREFIX = "realtime:ticket:"
# What became of a session's credential, for as long as a ticket it issued lives: kept
# by a password change it made (keep_credential), or ended by a logout (end_credential).
NOTE_PREFIX = "realtime:credential:"
ENDED = "ended"
KEPT = "kept:"
# Where the redemption's outcome travels in the ASGI scope: the ticket (its user and
# credential), None (unknown, expired or used) or the error that kept Redis from answering.
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


@dataclass(frozen=True)
class Ticket:
    """Whom a ticket was issued to, and with which credential (realtime.credentials):
    redeeming it opens a stream only while that credential holds."""

    user_id: str
    credential: Credential


def ticket_issue(*, user_id: uuid.UUID | int, credential: Credential) -> tuple[str, datetime]:
    ticket = secrets.token_urlsafe(32)
    ttl = settings.REALTIME_TICKET_TTL
    record = {"user": str(user_id), "credential": credential.id, "password": credential.password}
    _redis().set(PREFIX + ticket, json.dumps(record), ex=ttl)
    return ticket, timezone.now() + timedelta(seconds=ttl)


def ticket_redeem(ticket: str) -> Ticket | None:
    """Whom the ticket was issued to, once; None if unknown, expired or used (or
    written before tickets named their credential: one that cannot be revoked is
    refused)."""
    if not _plausible(ticket):
        return None
    return _ticket(_redis().getdel(PREFIX + ticket))


def _plausible(ticket: str) -> bool:
    return bool(ticket) and len(ticket) <= 100


# The event loop's client of REDIS_URL for redemptions: a subscribe spends its ticket
# on the loop, in one round trip, with no thread hop (a reconnect storm is thousands).
_loop_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LeanClient | RedisPyClient] = weakref.WeakKeyDictionary()


def _loop_redis() -> LeanClient | RedisPyClient:
    loop = asyncio.get_running_loop()
    client = _loop_clients.get(loop)
    if client is None:
        client = _loop_clients[loop] = client_for(settings.REDIS_URL, timeout=5, connect_timeout=2)
    return client


async def aticket_redeem(tickets: list[str]) -> list[Ticket | None]:
    """ticket_redeem of each, on this event loop, all in one round trip (a pipeline).
    Redis unreachable raises redis' ConnectionError, as the sync client does."""
    plausible = [ticket for ticket in tickets if _plausible(ticket)]
    client = _loop_redis()
    try:
        raws = await asyncio.gather(*(client.call("GETDEL", PREFIX + ticket) for ticket in plausible))
    except (redis.RedisError, OSError) as error:  # OSError, TimeoutError: the connection could not be made
        if isinstance(error, RedisConnectionError | redis.TimeoutError):
            raise
        raise RedisConnectionError(f"Redis unreachable: {error}") from error
    # In the URL's order: a ticket given twice is spent by its first mention.
    answers = iter(raws)
    return [_ticket(next(answers)) if _plausible(ticket) else None for ticket in tickets]


def _ticket(raw: Any) -> Ticket | None:
    if not raw:
        return None
    try:
        record = json.loads(raw)
        return Ticket(str(record["user"]), Credential(str(record["credential"]), password=str(record["password"])))
    except (ValueError, TypeError, KeyError):
        return None


def keep_credential(credential_id: str, password: str) -> None:
    """The session `credential_id` changed its user's password to the one stamped
    `password`: the tickets it issued before stay good (for as long as a ticket lives),
    though they carry the old stamp. Every other session's are refused."""
    _note_credential(credential_id, KEPT + password)


def end_credential(credential_id: str) -> None:
    """The session `credential_id` logged out: the tickets it issued are refused."""
    _note_credential(credential_id, ENDED)


def _note_credential(credential_id: str, note: str) -> None:
    # Set before the streams are told (on commit): a stream that missed that finds this.
    _redis().set(NOTE_PREFIX + credential_id, note, ex=settings.REALTIME_TICKET_TTL + 5)


def credential_note(credential_id: str) -> str | None:
    """What became of the session `credential_id` lately: ENDED, KEPT + a password
    stamp, or None."""
    note = _redis().get(NOTE_PREFIX + credential_id)
    if note is None:
        return None
    return note.decode() if isinstance(note, bytes) else str(note)


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


async def _redeem_all(tickets: list[str]) -> Ticket | Exception | None:
    """The first ticket; every one of them is spent."""
    try:
        redeemed = await aticket_redeem(tickets)
    except (RedisConnectionError, redis.TimeoutError) as error:
        # Raised where the request authenticates, which answers 503 (core.middleware).
        return error
    return redeemed[0]
