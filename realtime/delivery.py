"""What SSE and WebSocket connections share: replaying missed events from the table,
and turning channel-layer wake-ups into an ordered stream with no gaps and no
duplicates (who may read a stream is realtime.access)."""

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from channels.db import DatabaseSyncToAsync
from django.conf import settings

from core.fast_path import REDIS_ERRORS, cache_key, redis_client
from realtime.models import Event
from realtime.streams import current_seq, head_key, known_seq


def db_read(function: Callable[..., Any]) -> Callable[..., Any]:
    """An ORM read for the streams, run in the event loop's thread pool.

    channels' database_sync_to_async is thread-sensitive: outside a request (every
    WebSocket consumer) all such calls of a process queue behind ONE thread, which
    held subscribes to about 30 a second; inside a request (SSE) each stream gets a
    thread and a connection of its own. These reads share nothing between calls, so
    they run in the pool's threads, as many at once as there are threads and pooled
    connections (DB_POOL_MAX_SIZE)."""
    return DatabaseSyncToAsync(function, thread_sensitive=False)


@dataclass(frozen=True)
class Delivery:
    """One event as the streams send it; each wire form is built once, however many
    connections send it."""

    id: int
    type: str
    data: dict[str, Any]

    @cached_property
    def websocket_text(self) -> str:
        return json.dumps({"type": self.type, "id": self.id, "data": self.data}, separators=(",", ":"))

    @cached_property
    def sse_data(self) -> str:
        return json.dumps({"type": self.type, **self.data}, separators=(",", ":"))

    @cached_property
    def sse_message(self) -> bytes:
        """The whole SSE frame, encoded: every SSE connection writes these very bytes
        (Django passes bytes through; a str would be encoded again per connection)."""
        return f"id: {self.id}\ndata: {self.sse_data}\n\n".encode()

    @cached_property
    def sse_named_message(self) -> bytes:
        """The frame with `event: <type>` (?named=true)."""
        return f"id: {self.id}\nevent: {self.type}\ndata: {self.sse_data}\n\n".encode()


class Resync(Exception):
    """The client is too far behind (past the retention window, or too many events
    to replay at once): it must refetch its snapshot."""

    def __init__(self, latest: int) -> None:
        super().__init__(f"resync at {latest}")
        self.latest = latest


def _events_after(stream: str, after: int, limit: int) -> tuple[list[Delivery], int]:
    """Up to `limit` events of `stream` after id `after`, and the stream's latest id.
    Raises Resync if events after `after` were already pruned or exceed `limit`."""
    latest = current_seq(stream)
    if after > latest:
        # A position this stream never reached (another stream's id, a reset database):
        # waiting for ids to catch up would silently drop everything until then.
        raise Resync(latest)
    if after == latest:
        return [], latest
    rows = list(
        Event.objects.filter(stream=stream, seq__gt=after).order_by("seq").values_list("seq", "type", "payload")[: limit + 1]
    )
    if len(rows) > limit or not rows or rows[0][0] != after + 1:
        # Ids within a stream are contiguous, so a missing after+1 means it was pruned.
        raise Resync(latest)
    return [Delivery(seq, type_, payload) for seq, type_, payload in rows], latest


events_after = db_read(_events_after)


latest_seq = db_read(current_seq)

# The stream's last id from its head in Redis, else from the database (which then sets
# the head for the subscribes after this one).
known_latest_seq = db_read(known_seq)


async def cached_head(stream: str) -> int | None:
    """The stream's head as Redis holds it (realtime.streams: raised on every commit,
    expiring HEAD_SECONDS after the last), read on the event loop; None when unknown."""
    try:
        raw = await redis_client().call("GET", cache_key(head_key(stream)))
    except REDIS_ERRORS:
        return None
    try:
        return None if raw is None else int(raw)
    except ValueError:
        return None


async def subscribe_position(stream: str, since: int | None) -> tuple[int, bool]:
    """Where a new subscription's cursor starts (`since`, else the stream's last id) and
    whether it may have missed anything, read after the hub reads the stream.

    Nothing is missed when `since` is the head Redis holds: a commit after that head is
    raised reaches the subscription as a wake-up (the head is raised before the
    wake-up is sent, and the hub is in the stream's group already), and one whose head
    was never raised (its writer died, Redis away) is read by the hub's heartbeat as
    for any missed wake-up. So the subscribe that misses nothing costs one Redis read
    and no SQL; any other position (behind, ahead, a head unknown) reads the table."""
    head = await cached_head(stream)
    if since is None:
        if head is not None:
            return head, False
        # Read after the hub reads the stream: later commits come as wake-ups.
        return await known_latest_seq(stream), False
    return since, head != since


class StreamCursor:
    """Tracks the last id sent on one connection. A wake-up from the channel layer is
    delivered as is when it is the next id; a gap (a dropped or reordered wake-up)
    is filled from the table; anything already sent is dropped."""

    def __init__(self, stream: str, last_sent: int) -> None:
        self.stream = stream
        self.last_sent = last_sent

    async def catch_up(self) -> list[Delivery]:
        deliveries, _ = await events_after(self.stream, self.last_sent, settings.REALTIME_REPLAY_LIMIT)
        return self._advance(deliveries)

    async def on_wakeup(self, delivery: Delivery) -> list[Delivery]:
        if delivery.id <= self.last_sent:
            return []
        if delivery.id == self.last_sent + 1:
            return self._advance([delivery])
        return await self.catch_up()

    def accept(self, deliveries: list[Delivery]) -> list[Delivery]:
        """Rows read for several connections at once: this one's new ones, if they
        follow on from what it sent (a gap waits for its own catch-up)."""
        fresh = [d for d in deliveries if d.id > self.last_sent]
        if not fresh or fresh[0].id != self.last_sent + 1:
            return []
        return self._advance(fresh)

    def _advance(self, deliveries: list[Delivery]) -> list[Delivery]:
        fresh = [d for d in deliveries if d.id > self.last_sent]
        if fresh:
            self.last_sent = fresh[-1].id
        return fresh
