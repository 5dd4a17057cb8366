"""One membership per process per stream: the process fans events out to its own
connections.

Before, every SSE and WebSocket connection was a channel-layer member of its
stream's group, so one event became one Redis message per subscriber, popped one at
a time by the process that held them all, and every idle connection read the table
once per heartbeat. Now the hub of a process is the only member: it receives an event
once, turns it into a Delivery once (serialised once per wire format, see
Delivery), and puts it in the inbox of each local subscription of that stream. Once
per heartbeat it reads each stream's table once for all its subscriptions (rows
whose wake-up never came: a sender that died between commit and send, Redis away)
and refreshes its memberships, so that a killed process's membership expires with
CHANNEL_LAYER_GROUP_EXPIRY instead of living on.

A subscription's connection keeps its own StreamCursor: it alone decides what is
new for it (in order, no gap, no duplicate), and fills a gap from the table itself.

Every connection, SSE or WebSocket, is attached here first, so the hub is where the
streams one user may hold open are counted (REALTIME_MAX_STREAMS_PER_USER): exactly
in this process, and across processes through a lease per connection in Redis (see
StreamLeases).
"""

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections import defaultdict
from typing import Any

import redis.asyncio
from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import BaseChannelLayer, channel_layers
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError
from redis.exceptions import ResponseError

from core import metrics
from core.cache import UNREACHABLE as REDIS_UNREACHABLE
from core.fast_redis import client_for
from core.health import drain_started_at
from realtime.delivery import Delivery, Resync, StreamCursor, events_after
from realtime.streams import access_group, group_name

logger = logging.getLogger(__name__)

# Well inside the group expiry (CHANNEL_LAYER_GROUP_EXPIRY, 300 s by default).
MEMBERSHIP_REFRESH_SECONDS = 60

# Items of a subscription's inbox: (kind, payload, stream). The stream travels with
# the item, as a connection may have moved to another stream since it was queued.
EVENT = "event"  # (EVENT, Delivery, stream): a wake-up
ROWS = "rows"  # (ROWS, [Delivery], stream): the rows after the slowest local cursor
CATCH_UP = "catch_up"  # (CATCH_UP, None, stream): read the table yourself (the shared read met a resync)
REVOKE = "revoke"  # (REVOKE, reason, stream or None for all): its user may no longer read
# An SSE connection's own timing, put in its inbox so that it waits on nothing else:
HEARTBEAT = "heartbeat"  # (HEARTBEAT, None, None): nothing written for a heartbeat period
LIFETIME = "lifetime"  # (LIFETIME, None, None): its lifetime is over
InboxItem = tuple[str, Any, str | None]


# Why a REVOKE came (its payload): the user lost access to the stream (a suspension, a
# channel membership), or the credential the connection opened with was revoked.
ACCESS_REVOKED = "access"
CREDENTIAL_REVOKED = "credential"
# ...or the process is draining (told to stop): the connection should reopen elsewhere.
DRAINING = "draining"
# How often the hub looks at the drain file (a stat, no I/O beyond it).
DRAIN_POLL_SECONDS = 0.25


class Subscription:
    """A connection's place in the hub: its user, the credential it opened with
    (realtime.credentials; None for none known), the stream it reads (None until it
    subscribes) and its inbox. The connection sets `cursor` once it has one."""

    def __init__(self, user_id: str, credential: str | None = None) -> None:
        self.user_id = user_id
        self.credential = credential
        self.stream: str | None = None
        self.cursor: StreamCursor | None = None
        self.inbox: asyncio.Queue[InboxItem] = asyncio.Queue()
        # Its lease in Redis (StreamLeases), and whether it has left the hub.
        self.lease = uuid.uuid4().hex
        # Whether it was told to end because the process drains (once).
        self.told_to_drain = False
        self.detached = False
        # When its connection last wrote (an SSE connection's heartbeat is due a period after).
        self.last_write = time.monotonic()


class ServerDraining(Exception):
    """This process is draining: it takes no new stream (its clients go elsewhere)."""


class TooManyStreams(Exception):
    """The user already holds REALTIME_MAX_STREAMS_PER_USER open streams."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"You have {limit} streams (SSE and WebSocket) open, the most one user may have at once; "
            "close one and try again."
        )
        self.limit = limit


# Whatever the heartbeat, a lease outlives a few missed renewals.
LEASE_MIN_SECONDS = 30.0

# Remove the user's expired leases; add this one if fewer than the limit are left.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


_ACQUIRE_SHA = hashlib.sha1(_ACQUIRE.encode()).hexdigest()  # noqa: S324 - Redis names scripts by their SHA-1


class StreamLeases:
    """Open streams per user across processes: a sorted set per user in Redis, one
    member per connection, scored by when its lease expires. A process renews the
    leases of its connections at every heartbeat and removes a connection's lease when
    it closes; a process that dies without closing leaves leases that expire within
    `seconds`, so its users get their places back by then.

    Redis unreachable: the lease is not taken and the connection is let in (logged);
    the per-process count still holds, so a user has at most the limit per process."""

    KEY = "realtime:streams:{}"

    def __init__(self) -> None:
        self.client = redis.asyncio.Redis.from_url(
            settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2, health_check_interval=30
        )
        # A subscribe's and a close's one call each go through the lean pipelined client
        # (core.fast_redis): redis-py's asyncio client spent ~0.3 ms of CPU around each.
        self.lean = client_for(settings.REDIS_URL, timeout=2, connect_timeout=2)
        self.seconds = max(LEASE_MIN_SECONDS, 3 * settings.REALTIME_HEARTBEAT_SECONDS)

    async def acquire(self, user_id: str, lease: str, limit: int) -> bool:
        now = time.time()
        args = (1, self.KEY.format(user_id), now, now + self.seconds, limit, lease, int(self.seconds) + 1)
        try:
            try:
                return bool(await self.lean.call("EVALSHA", _ACQUIRE_SHA, *args))
            except ResponseError as error:
                if not str(error).startswith("NOSCRIPT"):
                    raise
                # Redis lost its scripts (a restart, SCRIPT FLUSH): once more, loading it.
                await self.lean.call("SCRIPT", "LOAD", _ACQUIRE)
                return bool(await self.lean.call("EVALSHA", _ACQUIRE_SHA, *args))
        except (*REDIS_UNREACHABLE, OSError, ResponseError) as error:
            logger.warning("Stream leases: Redis unreachable (%s); counting %s's streams in this process only", error, user_id)
            return True

    async def release(self, user_id: str, lease: str) -> None:
        with contextlib.suppress(*REDIS_UNREACHABLE, OSError, ResponseError):  # it expires
            await self.lean.call("ZREM", self.KEY.format(user_id), lease)

    async def renew(self, leases: dict[str, list[str]]) -> None:
        """Push back the expiry of these leases (user id -> lease ids)."""
        if not leases:
            return
        expires = time.time() + self.seconds
        async with self.client.pipeline(transaction=False) as pipe:
            for user_id, ids in leases.items():
                pipe.zadd(self.KEY.format(user_id), dict.fromkeys(ids, expires))
                pipe.expire(self.KEY.format(user_id), int(self.seconds) + 1)
            await pipe.execute()


class StreamHub:
    def __init__(self) -> None:
        if DEFAULT_CHANNEL_LAYER not in settings.CHANNEL_LAYERS:
            raise ImproperlyConfigured("The stream hub needs a channel layer: CHANNEL_LAYERS names none.")
        # A layer instance of its own, not the process-wide one: channels-redis keeps one
        # receive state per instance and refuses receives from two event loops at once
        # ("Two event loops are trying to receive()"). A server has one loop and one hub;
        # a process that runs loops one after another (the test suite) had a hub of a
        # loop still shutting down receive on the shared instance while the next one began.
        self.layer: BaseChannelLayer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
        self.channel: str | None = None  # this process's channel, once started
        self.by_stream: dict[str, set[Subscription]] = defaultdict(set)
        self.by_user: dict[str, set[Subscription]] = defaultdict(set)
        # Joins and leaves of the layer's groups happen one at a time, so that a group
        # is joined before its first subscriber reads the table.
        self.membership = asyncio.Lock()
        # The layer's groups this process is in (joined, and not left since).
        self.joined: set[str] = set()
        self.tasks: list[asyncio.Task[None]] = []
        self.leases = StreamLeases()
        # Draining (told to stop, half way through the drain): no new streams.
        self.draining = False
        # The highest event id whose wake-up (or table read) reached this hub, by stream.
        self.woken: dict[str, int] = {}
        # The SSE connections, whose heartbeats the hub times (beat_while_quiet).
        self.beating: set[Subscription] = set()

    @property
    def started_channel(self) -> str:
        """This process's channel; the hub joins groups and receives only once started."""
        if self.channel is None:
            raise RuntimeError("The stream hub has not started.")
        return self.channel

    async def attach(self, user_id: str, credential: str | None = None) -> Subscription:
        """A connection of `user_id` opened with `credential`, reading no stream yet
        (but told of a revoke). Raises TooManyStreams if the user already holds
        REALTIME_MAX_STREAMS_PER_USER streams, in this process or (by their leases) in
        all of them.

        A revoke sent before this returns may not reach the subscription (this process
        may not have been in the user's group yet): the caller checks its credential
        after attaching (realtime.auth.credential_holder), which sees any revocation
        committed before the revoke was sent.

        Its cost: the lease (one round trip), and a join of the user's group only for
        the user's first stream in this process; no lock is held across the lease, so
        a storm's subscribes do not wait for each other's round trips."""
        await self._start()
        if self.draining:
            raise ServerDraining
        subscription = Subscription(str(user_id), credential)
        limit = settings.REALTIME_MAX_STREAMS_PER_USER
        users = self.by_user[subscription.user_id]
        if len(users) >= limit:
            raise TooManyStreams(limit)
        # Its place in this process, counted and taken with no await in between.
        users.add(subscription)
        leased = False
        try:
            leased = await self.leases.acquire(subscription.user_id, subscription.lease, limit)
            if not leased:
                raise TooManyStreams(limit)
            await self._join(access_group(subscription.user_id))
        except BaseException:
            subscription.detached = True
            users.discard(subscription)
            if leased:
                await self.leases.release(subscription.user_id, subscription.lease)
            await self._discard_if_empty(None, subscription.user_id)
            raise
        return subscription

    async def read(self, subscription: Subscription, stream: str | None) -> None:
        """Move the subscription to `stream` (None: to no stream). When this returns,
        every event committed from now on reaches its inbox."""
        left = subscription.stream
        if left is not None:
            self._leave_stream(subscription)
        subscription.stream, subscription.cursor = stream, None
        # What the inbox holds for the stream it left is not for the next one.
        kept = [item for item in _drain(subscription.inbox) if item[0] == REVOKE]
        for item in kept:
            subscription.inbox.put_nowait(item)
        if stream is not None:
            self.by_stream[stream].add(subscription)
            await self._join(group_name(stream))
        if left is not None and left != stream:
            await self._discard_if_empty(left, None)

    async def detach(self, subscription: Subscription) -> None:
        """The connection is gone. Idempotent: an SSE response that never started
        streaming is detached by its close (realtime.sse)."""
        if subscription.detached:
            return
        subscription.detached = True
        self.beating.discard(subscription)
        stream = subscription.stream
        if stream is not None:
            self._leave_stream(subscription)
        users = self.by_user.get(subscription.user_id)
        if users is not None:
            users.discard(subscription)
        await self.leases.release(subscription.user_id, subscription.lease)
        await self._discard_if_empty(stream, subscription.user_id)

    def _leave_stream(self, subscription: Subscription) -> None:
        subscribers = self.by_stream.get(subscription.stream or "")
        if subscribers is not None:
            subscribers.discard(subscription)

    async def _join(self, group: str) -> None:
        """Be in the layer's `group` when this returns: one group_add for the process,
        not one per connection (a group this process is in already costs nothing)."""
        if group in self.joined:
            return
        async with self.membership:
            # Joined meanwhile by another connection (or left and joined again).
            if group not in self.joined:
                await self.layer.group_add(group, self.started_channel)
                self.joined.add(group)

    async def _discard_if_empty(self, stream: str | None, user_id: str | None) -> None:
        """Leave the groups of `stream` and of `user_id` if no local connection reads
        them any longer (only those: a storm's detaches must not each walk every
        stream and user of the process)."""
        async with self.membership:
            if stream is not None and not self.by_stream.get(stream):
                self.by_stream.pop(stream, None)
                self.woken.pop(stream, None)
                group = group_name(stream)
                if group in self.joined:
                    self.joined.discard(group)
                    await self.layer.group_discard(group, self.started_channel)
            if user_id is not None and not self.by_user.get(user_id):
                self.by_user.pop(user_id, None)
                group = access_group(user_id)
                if group in self.joined:
                    self.joined.discard(group)
                    await self.layer.group_discard(group, self.started_channel)

    async def _start(self) -> None:
        # Under the membership lock: two first connections must not start two hubs' worth
        # of channels and loops.
        async with self.membership:
            if self.channel is not None:
                return
            self.channel = await self.layer.new_channel()
            self.tasks = [
                asyncio.create_task(self._receive_forever()),
                asyncio.create_task(self._read_tables_forever()),
                asyncio.create_task(self._end_streams_when_draining()),
                asyncio.create_task(self._heartbeats_forever()),
            ]

    def beat_while_quiet(self, subscription: Subscription) -> None:
        """Put a HEARTBEAT in the subscription's inbox whenever it has written nothing
        (its `last_write`) for REALTIME_HEARTBEAT_SECONDS, until it detaches. One timer
        for the process, not one per connection per event: an SSE connection waits on
        its inbox alone, as a WebSocket's pump does."""
        if not subscription.detached:
            self.beating.add(subscription)

    async def _heartbeats_forever(self) -> None:
        while True:
            period = float(settings.REALTIME_HEARTBEAT_SECONDS)
            # Due within a quarter period (at most a second) of its time.
            await asyncio.sleep(min(1.0, period / 4))
            now = time.monotonic()
            for subscription in list(self.beating):
                if now - subscription.last_write >= period:
                    subscription.last_write = now
                    subscription.inbox.put_nowait((HEARTBEAT, None, None))

    async def _end_streams_when_draining(self) -> None:
        """Told to stop (core.health: the drain file), the process ends its streams half
        way through the drain, once a load balancer polling /readyz has stopped sending
        it new ones, so that their clients reconnect to another host from their last
        event id; from then on it takes no new stream (ServerDraining)."""
        while True:
            await asyncio.sleep(DRAIN_POLL_SECONDS)
            started = drain_started_at()
            self.draining = started is not None and time.time() - started >= settings.WEB_DRAIN_SECONDS / 2
            if not self.draining:
                continue
            for subscriptions in list(self.by_user.values()):
                for subscription in list(subscriptions):
                    if not subscription.told_to_drain:
                        subscription.told_to_drain = True
                        subscription.inbox.put_nowait((REVOKE, DRAINING, None))

    async def _receive_forever(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.started_channel)
                self.dispatch(message)
            except asyncio.CancelledError:
                raise
            except Exception:
                # The hub must outlive any one bad message or layer error.
                logger.exception("Stream hub: could not dispatch a message")
                await asyncio.sleep(0.5)

    def dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "stream.event":
            stream = message.get("stream") or ""
            subscribers = self.by_stream.get(stream)
            if subscribers:
                metrics.wakeup_received(message.get("committed_at"))
                self.woken[stream] = max(self.woken.get(stream, 0), message["id"])
                delivery = Delivery(message["id"], message["event_type"], message["data"])
                for subscription in list(subscribers):
                    subscription.inbox.put_nowait((EVENT, delivery, stream))
        elif kind == "stream.revoke":
            stream = message.get("stream")
            reason = message.get("reason") or ACCESS_REVOKED
            for subscription in list(self.by_user.get(str(message.get("user_id")), ())):
                if (stream is None or subscription.stream == stream) and _credential_matches(subscription, message):
                    subscription.inbox.put_nowait((REVOKE, reason, stream))

    async def _read_tables_forever(self) -> None:
        refreshed_at = time.monotonic()
        while True:
            await asyncio.sleep(settings.REALTIME_HEARTBEAT_SECONDS)
            try:
                await self.leases.renew({user: [s.lease for s in subs] for user, subs in list(self.by_user.items()) if subs})
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("Stream hub: the stream leases could not be renewed", exc_info=True)
            try:
                await self.read_tables()
                if time.monotonic() - refreshed_at >= MEMBERSHIP_REFRESH_SECONDS:
                    refreshed_at = time.monotonic()
                    await self._refresh_memberships()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("Stream hub: the periodic read failed; trying again at the next heartbeat")

    async def read_tables(self) -> None:
        """One read per stream for all its local subscriptions, from the slowest cursor."""
        for stream, subscribers in list(self.by_stream.items()):
            cursors = [s.cursor.last_sent for s in subscribers if s.cursor is not None]
            if not cursors:
                continue
            try:
                deliveries, _ = await events_after(stream, min(cursors), settings.REALTIME_REPLAY_LIMIT)
            except Resync:
                item: InboxItem = (CATCH_UP, None, stream)
            except DatabaseError:
                logger.warning("Stream hub: %s could not be read; trying again at the next heartbeat", stream, exc_info=True)
                metrics.delivery_dropped("table_unreadable")
                continue
            else:
                if not deliveries:
                    continue
                # Rows past every wake-up received: theirs never came (or not yet).
                woken = self.woken.get(stream, 0)
                metrics.delivery_dropped("wakeup_missed", sum(1 for delivery in deliveries if delivery.id > woken))
                self.woken[stream] = max(woken, deliveries[-1].id)
                item = (ROWS, deliveries, stream)
            for subscription in list(subscribers):
                subscription.inbox.put_nowait(item)

    async def _refresh_memberships(self) -> None:
        """Join again what this process reads: group_add renews the membership's
        timestamp, so only a dead process's memberships reach the group expiry."""
        async with self.membership:
            for group in list(self.joined):
                await self.layer.group_add(group, self.started_channel)


def _credential_matches(subscription: Subscription, message: dict[str, Any]) -> bool:
    """Whether a revoke names the subscription's credential: `only` lists the revoked
    credentials, `keep` the one spared (the session that changed the password); a
    revoke with neither names every credential."""
    only, keep = message.get("only"), message.get("keep")
    if only is not None and subscription.credential not in only:
        return False
    return keep is None or subscription.credential != keep


def _drain(inbox: asyncio.Queue[InboxItem]) -> list[InboxItem]:
    items = []
    while not inbox.empty():
        items.append(inbox.get_nowait())
    return items


_hubs: dict[asyncio.AbstractEventLoop, StreamHub] = {}


def get_hub() -> StreamHub:
    """The hub of the running event loop (daphne runs one per process)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        for stale in [other for other in _hubs if other.is_closed()]:
            del _hubs[stale]
        hub = _hubs[loop] = StreamHub()
    return hub


async def deliveries_for(cursor: StreamCursor, item: InboxItem) -> list[Delivery]:
    """What an inbox item means for one connection's cursor (may raise Resync)."""
    kind, payload, stream = item
    if stream != cursor.stream:
        return []
    if kind == EVENT:
        return await cursor.on_wakeup(payload)
    if kind == ROWS:
        return cursor.accept(payload)
    if kind == CATCH_UP:
        return await cursor.catch_up()
    return []
