"""Publishing events: the one way any producer reports a change.

`publish()` runs inside the transaction of the change: it takes the stream's next
id, writes the event row, and only after commit wakes the stream's channel-layer
group. A rolled-back change leaves neither row nor message behind.
"""

import asyncio
import functools
import logging
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, cast

from channels.layers import BaseChannelLayer, get_channel_layer
from django.core.cache import cache
from django.core.cache.backends.redis import RedisCache
from django.db import connection, transaction

from core import metrics
from core.cache import UNREACHABLE
from core.request_log import current_request_id
from realtime.models import Event, Stream

logger = logging.getLogger(__name__)

# On a snapshot (a list or status answer): the stream's last event id when it was read,
# so that a client opens its stream there (SSE `?last_event_id=`, WebSocket `since`).
LAST_EVENT_ID_HEADER = "X-Last-Event-ID"


def channel_stream(channel_id: Any) -> str:
    return f"channel:{channel_id}"


def user_stream(user_id: Any) -> str:
    return f"user:{user_id}"


def group_name(stream: str) -> str:
    """Channels group names allow only ASCII letters, digits, '-', '_' and '.'."""
    return "stream." + stream.replace(":", ".")


def access_group(user_id: Any) -> str:
    """Every stream connection of a user also joins this group, so that losing access
    everywhere at once (a suspension) reaches all of them."""
    return group_name(f"access:{user_id}")


def publish(stream: str, type: str, payload: dict[str, Any]) -> Event:
    if not connection.in_atomic_block:
        raise RuntimeError("publish() must run inside the transaction of the change it reports.")
    table = Stream._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f'INSERT INTO "{table}" (name, last_seq) VALUES (%s, 1) '  # noqa: S608 - the model's own table name
            f'ON CONFLICT (name) DO UPDATE SET last_seq = "{table}".last_seq + 1 RETURNING last_seq',
            [stream],
        )
        (seq,) = cursor.fetchone()
    event = Event.objects.create(stream=stream, seq=seq, type=type, payload=payload, request_id=current_request_id())
    # The head first: a client woken by the event then reads past every cache of the old state.
    transaction.on_commit(lambda: advance_head(event.stream, event.seq), robust=True)
    transaction.on_commit(lambda: send_to_group(event))
    return event


def message_for(event: Event, *, committed_at: float | None = None) -> dict[str, Any]:
    """The wake-up of `event`; `committed_at` (time.time() at commit) lets each hub that
    receives it measure the outbox's lag (core.metrics)."""
    message = {"type": "stream.event", "stream": event.stream, "id": event.seq, "event_type": event.type, "data": event.payload}
    if committed_at is not None:
        message["committed_at"] = committed_at
    return message


def _group_send(stream: str, message: dict[str, Any]) -> None:
    _group_send_to(group_name(stream), message)


# How long a commit's hook waits for its wake-up to be sent (the layer's own socket
# timeouts are longer: a Redis that does not answer costs the wake-up, not the worker).
PUBLISH_TIMEOUT_SECONDS = 5.0


class _Publisher:
    """The process's sender of wake-ups: one event loop in a thread of its own, on which
    the process's channel layer keeps one connection pool, reused by every event.

    Before, each send was `async_to_sync(layer.group_send)`: outside a server's loop (an
    RQ work horse, a management command, a thread of a sync view) that made a new event
    loop per call, and channels-redis keeps its connections per loop, so every event
    opened (and dropped) a Redis connection: the capacity model's first limit past
    placement. A forked process (RQ's work horse) starts a publisher of its own: a
    thread does not survive a fork."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="realtime-publisher", daemon=True)
        self.thread.start()

    def send(self, layer: BaseChannelLayer, group: str, message: dict[str, Any]) -> None:
        future = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), self.loop)
        try:
            future.result(PUBLISH_TIMEOUT_SECONDS)
        except FutureTimeout:
            future.cancel()
            raise


_publisher: _Publisher | None = None
_publisher_lock = threading.Lock()


def publisher() -> _Publisher:
    """This process's publisher (a new one after a fork)."""
    global _publisher  # noqa: PLW0603 - one per process, made on first use
    current = _publisher
    if current is not None and current.pid == os.getpid():
        return current
    with _publisher_lock:
        if _publisher is None or _publisher.pid != os.getpid():
            _publisher = _Publisher()
        return _publisher


def _group_send_to(group: str, message: dict[str, Any]) -> None:
    """The fast path; a failure is logged, not raised: replay reads the rows, and
    connections check access again when they reopen."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        publisher().send(layer, group, message)
    except Exception:
        logger.exception("Could not send %s to %s", message["type"], group)
        if message["type"] == "stream.event":
            # Its streams see it only when their hub next reads the table.
            metrics.delivery_dropped("wakeup_not_sent")


def send_to_group(event: Event) -> None:
    metrics.event_published(event.stream, event.type)
    _group_send(event.stream, message_for(event, committed_at=time.time()))


def revoke_subscriber(stream: str, user_id: Any) -> None:
    """After commit, tell every connection of `user_id` on `stream` to close: the user
    may no longer read it. (Connections check access when they open; this covers
    the ones already open.)"""

    message = {"type": "stream.revoke", "stream": stream, "user_id": str(user_id)}
    transaction.on_commit(lambda: _group_send(stream, message))


def revoke_user_everywhere(user_id: Any) -> None:
    """After commit, close every open stream connection of `user_id`, whatever it reads."""
    message = {"type": "stream.revoke", "stream": None, "user_id": str(user_id)}
    transaction.on_commit(lambda: _group_send_to(access_group(user_id), message))


# Credential ids per revoke message: a token's is about 140 bytes.
CREDENTIALS_PER_REVOKE = 100


def revoke_credentials(user_id: Any, *, only: list[str] | None = None, keep: str | None = None) -> None:
    """After commit, close the open streams of `user_id` that were opened with one of
    the credentials `only` names (realtime.credentials), or with any credential but
    `keep` (a password change, which spares the session that made it). Each is told
    its credential was revoked (WebSocket close code 4401; SSE ends, and its reconnect
    is refused)."""
    base: dict[str, Any] = {"type": "stream.revoke", "stream": None, "user_id": str(user_id), "reason": "credential"}
    if only is None:
        messages = [{**base, "keep": keep}]
    else:
        messages = [
            {**base, "only": only[start:start + CREDENTIALS_PER_REVOKE]} for start in range(0, len(only), CREDENTIALS_PER_REVOKE)
        ]
    group = access_group(user_id)
    for message in messages:
        transaction.on_commit(functools.partial(_group_send_to, group, message))


def current_seq(stream: str) -> int:
    """The stream's last committed event id (0 when it has none yet)."""
    return Stream.objects.filter(name=stream).values_list("last_seq", flat=True).first() or 0


# --- The stream's head: its last committed event id, kept in Redis for caches keyed by it.
#
# Set on commit by publish(), only ever raised. A cache entry keyed by the head is
# unreachable once a newer event commits, on any process. The head expires after
# HEAD_SECONDS: a head that missed an advance (the writer died between COMMIT and its
# on-commit hook, Redis was briefly unreachable, or restarted from an older snapshot)
# is read again from the database within that time. A missing head is unknown, never 0.
HEAD_SECONDS = 5
_RAISE_HEAD = """
local current = tonumber(redis.call('GET', KEYS[1]))
if current == nil or current < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
end
return 0
"""


def _head_key(stream: str) -> str:
    return f"stream-head:{stream}"


def head_key(stream: str) -> str:
    """The cache key of the stream's head (its value: the head's digits), for a reader
    that gates on it (core.fast_path)."""
    return _head_key(stream)


def stream_heads(streams: Iterable[str]) -> dict[str, int]:
    """The heads Redis knows, by stream; a stream left out is unknown."""
    keys = {_head_key(stream): stream for stream in streams}
    return {keys[key]: seq for key, seq in cache.get_many(list(keys)).items()}


def advance_head(stream: str, seq: int) -> None:
    """Raise the stream's head to `seq` (never lower it), for HEAD_SECONDS."""
    key = cache.make_and_validate_key(_head_key(stream))
    try:
        # settings.CACHES names core.cache.ResilientRedisCache, a RedisCache.
        cast(RedisCache, cache)._cache.get_client(key, write=True).eval(_RAISE_HEAD, 1, key, seq, HEAD_SECONDS)
    except UNREACHABLE as error:
        logger.warning("Could not advance the head of %s to %s: %s", stream, seq, error)


def known_seqs(streams: Iterable[str]) -> dict[str, int]:
    """The streams' last committed event ids: from their heads, or (one query for the
    unknown ones) from the database, which then sets their heads."""
    streams = set(streams)
    heads = stream_heads(streams)
    unknown = streams - set(heads)
    if unknown:
        stored = dict(Stream.objects.filter(name__in=unknown).values_list("name", "last_seq"))
        for stream in unknown:
            heads[stream] = stored.get(stream, 0)
            advance_head(stream, heads[stream])
    return heads


def known_seq(stream: str) -> int:
    return known_seqs([stream])[stream]


def prune_events(*, older_than_hours: int) -> int:
    """Drop events past the retention window; a client behind them gets `resync`."""
    from datetime import timedelta

    from django.utils import timezone

    deleted, _ = Event.objects.filter(created_at__lt=timezone.now() - timedelta(hours=older_than_hours)).delete()
    return deleted
