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

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

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

# The decision, as a Lua function: core.fast_path's one-trip script calls it too, so
# that a poll answered ahead of the framework is counted exactly as DRF's would be.
# Its arguments: this window's counter, the previous window's, the previous window's
# weight (0..1), the limit, the counters' lifetime in ms. Returns {allowed, this
# window's count, the previous window's count}, the counts as they were before this request.
COUNT_IF_ALLOWED_FUNCTION = """
local function count_if_allowed(current_key, previous_key, weight, limit, lifetime_ms)
  local current = tonumber(redis.call('GET', current_key) or '0')
  local previous = tonumber(redis.call('GET', previous_key) or '0')
  if previous * tonumber(weight) + current >= tonumber(limit) then
    return {0, current, previous}
  end
  redis.call('INCR', current_key)
  redis.call('PEXPIRE', current_key, lifetime_ms)
  return {1, current, previous}
end
"""
# KEYS: this window's counter, the previous window's. ARGV: weight, limit, lifetime in ms.
_COUNT_IF_ALLOWED = COUNT_IF_ALLOWED_FUNCTION + "return count_if_allowed(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])\n"


@dataclass(frozen=True)
class Window:
    """One request's place in a client's sliding window: the two counters' keys (the
    cache's full keys) and the arguments of count_if_allowed after them."""

    current_key: str
    previous_key: str
    previous_weight: float
    window_left: float
    limit: int
    lifetime_ms: int

    @property
    def args(self) -> list[float | int]:
        return [self.previous_weight, self.limit, self.lifetime_ms]


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
        window = self.window(key, self.timer())
        self._previous_weight, self._window_left = window.previous_weight, window.window_left
        try:
            # settings.CACHES names a Redis cache (core.cache.ResilientRedisCache).
            client = cast(RedisCache, cache)._cache.get_client(write=True)
            allowed, self._current, self._previous = _script(client)(
                keys=[window.current_key, window.previous_key], args=window.args, client=client
            )
        except UNREACHABLE:
            return True
        return bool(allowed)

    def window(self, key: str, now: float, make_key: Callable[[str], str] | None = None) -> Window:
        """Where a request of the client `key` (get_cache_key's) made at `now` falls;
        `make_key` makes the cache's full keys (the cache's own by default)."""
        make_key = make_key or cache.make_and_validate_key
        window, offset = divmod(now, self.duration)
        return Window(
            current_key=make_key(f"{key}:{int(window)}"),
            previous_key=make_key(f"{key}:{int(window) - 1}"),
            previous_weight=1.0 - offset / self.duration,
            window_left=self.duration - offset,
            limit=self.num_requests,
            lifetime_ms=int(self.duration * 2000),
        )

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


def user_window(user_pk: Any, make_key: Callable[[str], str] | None = None) -> Window | None:
    """The window a request of the user `user_pk` falls in now under UserRateThrottle
    (its key is DRF's, `throttle_user_<pk>`); None when the user rate is unlimited.
    For a caller that counts the request itself (core.fast_path)."""
    throttle = UserRateThrottle()
    if throttle.rate is None:
        return None
    return throttle.window(throttle.cache_format % {"scope": throttle.scope, "ident": user_pk}, throttle.timer(), make_key)
