"""The channel layer: channels-redis, made to survive waiting and Redis restarts.

channels-redis waits for messages with a blocking BZPOPMIN of `brpop_timeout` (5 s)
seconds. redis-py 8 gives every socket a 5 s read timeout by default, which races
that pop, so an idle stream died with `TimeoutError: Timeout reading from ...`
(channels_redis#422, redis-py#4091). This layer gives its connections a read
timeout safely above the pop (so a dead Redis is still noticed, unlike with no
timeout at all), and:

- waits out a Redis outage in `receive()` instead of raising it into every open
  stream: the streams keep their clients, and the outbox fills the gap;
- remembers which of this process's channels joined which groups, and joins them
  again once Redis answers after an error: a restarted Redis has forgotten them,
  and without this a stream would only see new events at its periodic table read;
- never lets a failed `group_add` / `group_discard` end a stream (the membership is
  restored, or expires with the group, respectively);
- allows more connections per pool than redis-py 8's new default of 100, past which
  its pool raises MaxConnectionsError: a reconnect storm of 1,000 streams (each
  joining and leaving its groups at once) reached it. (redis-py's blocking pool
  would queue callers instead, but with it the streams stalled in the browser tests
  here; the cause was not found.)
"""

import asyncio
import logging
from collections import defaultdict
from typing import Any

from channels_redis.core import RedisChannelLayer

from core.cache import UNREACHABLE

logger = logging.getLogger(__name__)

# Redis unreachable, as the cache defines it, or the socket failing under redis-py.
TRANSIENT_ERRORS = (*UNREACHABLE, OSError)
# How long the receive loop waits between attempts while Redis is unreachable.
RETRY_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0)


class ResilientRedisChannelLayer(RedisChannelLayer):
    # Read timeout of the layer's sockets unless a host says otherwise: the pop plus margin.
    socket_timeout = RedisChannelLayer.brpop_timeout + 10
    # Connections per process and Redis host (redis-py 7 had no bound at all).
    max_connections = 2000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for host in self.hosts:
            timeout = host.setdefault("socket_timeout", self.socket_timeout)
            if timeout is not None and timeout <= self.brpop_timeout:
                raise ValueError(
                    f"The channel layer's socket_timeout ({timeout} s) must exceed its blocking pop "
                    f"({self.brpop_timeout} s), or every idle stream times out."
                )
            host.setdefault("socket_connect_timeout", 5)
            host.setdefault("socket_keepalive", True)
            host.setdefault("health_check_interval", 30)
            host.setdefault("max_connections", self.max_connections)
        # group -> channels of this process in it, to re-join after Redis lost them.
        self.memberships: dict[str, set[str]] = defaultdict(set)
        self.memberships_lost = False
        self._failures = 0

    async def _brpop_with_clean(self, index: int, channel: str, timeout: float) -> Any:  # noqa: ASYNC109 - channels_redis's signature, overridden
        try:
            member = await super()._brpop_with_clean(index, channel, timeout)
        except TRANSIENT_ERRORS as error:
            self._note_failure("receive", error)
            await asyncio.sleep(RETRY_DELAYS[min(self._failures, len(RETRY_DELAYS)) - 1])
            # None makes receive_single() wait again, as after an empty pop.
            return None
        if self._failures or self.memberships_lost:
            await self._rejoin_groups()
        return member

    async def group_add(self, group: str, channel: str) -> None:
        self.memberships[group].add(channel)
        try:
            await super().group_add(group, channel)
        except TRANSIENT_ERRORS as error:
            # The receive loop joins it once Redis answers again.
            self.memberships_lost = True
            self._note_failure("group_add", error)

    async def group_discard(self, group: str, channel: str) -> None:
        channels = self.memberships.get(group)
        if channels is not None:
            channels.discard(channel)
            if not channels:
                del self.memberships[group]
        try:
            await super().group_discard(group, channel)
        except TRANSIENT_ERRORS as error:
            # Left in the group, it only collects messages that expire unread.
            self._note_failure("group_discard", error)

    def _note_failure(self, operation: str, error: BaseException) -> None:
        self._failures += 1
        if self._failures == 1:
            logger.warning("Channel layer: Redis unreachable (%s: %s); waiting for it", operation, error)

    async def _rejoin_groups(self) -> None:
        pairs = [(group, channel) for group, channels in list(self.memberships.items()) for channel in list(channels)]
        try:
            for group, channel in pairs:
                await RedisChannelLayer.group_add(self, group, channel)
        except TRANSIENT_ERRORS as error:
            self.memberships_lost = True
            self._note_failure("rejoin", error)
            return
        if self._failures:
            logger.warning("Channel layer: Redis is back after %d failed calls; %d memberships restored", self._failures, len(pairs))
        self._failures = 0
        self.memberships_lost = False
