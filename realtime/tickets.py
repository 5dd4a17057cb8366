"""Short-lived single-use tickets for EventSource and WebSocket URLs, which cannot
carry an Authorization header. A long-lived token never travels in a URL."""

import functools
import secrets
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.utils import timezone

PREFIX = "realtime:ticket:"


@functools.cache
def _redis() -> redis.Redis:
    """One client per process, not a new connection per ticket; its pool makes a
    burst of tickets (a reconnect storm) wait for a connection instead of failing
    past redis-py 8's default of 100 (MaxConnectionsError)."""
    pool = redis.BlockingConnectionPool.from_url(
        settings.REDIS_URL, max_connections=50, timeout=5, socket_connect_timeout=2, socket_timeout=5
    )
    return redis.Redis(connection_pool=pool)


def ticket_issue(*, user_id) -> tuple[str, datetime]:  # type: ignore[no-untyped-def]
    ticket = secrets.token_urlsafe(32)
    ttl = settings.REALTIME_TICKET_TTL
    _redis().set(PREFIX + ticket, str(user_id), ex=ttl)
    return ticket, timezone.now() + timedelta(seconds=ttl)


def ticket_redeem(ticket: str) -> str | None:
    """The user id the ticket was issued to, once; None if unknown, expired or used."""
    if not ticket or len(ticket) > 100:
        return None
    user_id = _redis().getdel(PREFIX + ticket)
    return user_id.decode() if user_id else None
