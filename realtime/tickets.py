"""Short-lived single-use tickets for EventSource and WebSocket URLs, which cannot
carry an Authorization header. A long-lived token never travels in a URL."""

import secrets
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.utils import timezone

PREFIX = "realtime:ticket:"


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def ticket_issue(*, user_id) -> tuple[str, datetime]:  # type: ignore[no-untyped-def]
    ticket = secrets.token_urlsafe(32)
    ttl = settings.REALTIME_TICKET_TTL
    client = _redis()
    try:
        client.set(PREFIX + ticket, str(user_id), ex=ttl)
    finally:
        client.close()
    return ticket, timezone.now() + timedelta(seconds=ttl)


def ticket_redeem(ticket: str) -> str | None:
    """The user id the ticket was issued to, once; None if unknown, expired or used."""
    if not ticket or len(ticket) > 100:
        return None
    client = _redis()
    try:
        user_id = client.getdel(PREFIX + ticket)
    finally:
        client.close()
    return user_id.decode() if user_id else None
