"""Rate throttles that cost one Redis round trip and no pickling.

DRF's throttles keep a list of every request's timestamp per client in the cache: a
read and a write-back per request, the whole list pickled both ways (up to 3,000
floats at the user rate of 3000/min). Here each client has a counter per fixed window
of the rate's duration, and the previous window's count is weighted by how much of
it still overlaps the sliding window ending now (the sliding-window-counter
approximation, exact when requests are spread evenly). One Lua call reads both,
decides and counts an allowed request: concurrent requests of one client cannot both
take the last slot.

The cache may be lost (core/cache.py): with Redis unreachable every request is
allowed, as with DRF's throttles over that cache.
"""

from typing import TYPE_CHECKING, cast

from django.core.cache import cache
from django.core.cache.backends.redis import RedisCache
from redis import Redis
from redis.commands.core import Script
from rest_framework import throttling

from core.cache import UNREACHABLE
from core.client import client_identity

if TYPE_CHECKING:
    # Not at run time: DRF imports this module while rest_framework.views is loading
    # (settings.REST_FRAMEWORK's DEFAULT_THROTTLE_CLASSES).
    from rest_framework.request import Request
    from rest_framework.views import APIView

# KEYS: this window's counter, the previous window's. ARGV: the previous window's
# weight (0..1), the limit, the counters' lifetime in ms. Returns {allowed, this window's
# count, the previous window's count}, the counts as they were before this request.
_COUNT_IF_ALLOWED = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local previous = tonumber(redis.call('GET', KEYS[2]) or '0')
local weighted = previous * tonumber(ARGV[1]) + current
if weighted >= tonumber(ARGV[2]) then
  return {0, current, previous}
end
redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, current, previous}
"""

_scripts: dict[int, Script] = {}


def _script(client: Redis) -> Script:
    script = _scripts.get(id(client))
    if script is None:
        script = _scripts[id(client)] = client.register_script(_COUNT_IF_ALLOWED)
    return script


class SlidingWindowCounterMixin(throttling.SimpleRateThrottle):
    """Replaces SimpleRateThrottle's timestamp list; keys and rates are DRF's, but for
    the client an anonymous request is counted as (get_ident)."""

    # Set by SimpleRateThrottle.__init__ from the rate; its stubs leave them undeclared.
    num_requests: int
    duration: int

    def get_ident(self, request: "Request") -> str:
        # DRF's reads X-Forwarded-For by NUM_PROXIES on its own terms and counts every
        # IPv6 address apart; core.client's identity is what every other limit counts by.
        return client_identity(request)

    def allow_request(self, request: "Request", view: "APIView") -> bool:
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        now = self.timer()
        window, offset = divmod(now, self.duration)
        self._previous_weight = 1.0 - offset / self.duration
        self._window_left = self.duration - offset
        current_key = cache.make_and_validate_key(f"{key}:{int(window)}")
        previous_key = cache.make_and_validate_key(f"{key}:{int(window) - 1}")
        try:
            # settings.CACHES names a Redis cache (core.cache.ResilientRedisCache).
            client = cast(RedisCache, cache)._cache.get_client(write=True)
            allowed, self._current, self._previous = _script(client)(
                keys=[current_key, previous_key],
                args=[self._previous_weight, self.num_requests, int(self.duration * 2000)],
                client=client,
            )
        except UNREACHABLE:
            return True
        return bool(allowed)

    def wait(self) -> float | None:
        """Seconds until a request would be allowed again, if none came meanwhile."""
        limit, current, previous, duration = self.num_requests, self._current, self._previous, self.duration
        if current >= limit:
            # Not before this window ends, then until its own weight has shrunk enough.
            return self._window_left + duration * (1 - limit / current)
        if previous <= 0:
            return None
        # The previous window's weight shrinks by 1/duration per second.
        return max(0.0, duration * (self._previous_weight - (limit - current) / previous))


class AnonRateThrottle(SlidingWindowCounterMixin, throttling.AnonRateThrottle):
    pass


class UserRateThrottle(SlidingWindowCounterMixin, throttling.UserRateThrottle):
    pass


class ScopedRateThrottle(SlidingWindowCounterMixin, throttling.ScopedRateThrottle):
    pass
