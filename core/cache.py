"""The cache may be lost at any time: an unreachable Redis is a miss, not a 500.

Django's RedisCache raises redis-py's connection errors into the request, so a
Redis restart turned every throttled request (every API call) into a 500. Here a
read that cannot reach Redis answers as a miss and a write is skipped, logged once
per outage. Nothing correct may depend on the cache (it may also evict), so the
only cost is a slower request or, for the throttles, a few uncounted calls while
Redis is away.
"""

import logging
import threading
import time
from collections.abc import Callable
from functools import cached_property
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from redis import ConnectionPool, Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core import metrics

logger = logging.getLogger(__name__)

UNREACHABLE = (RedisConnectionError, RedisTimeoutError)
_MISSING = object()
# At most one warning per this many seconds while Redis stays away.
WARN_EVERY_SECONDS = 30.0


class ReusedClientRedisCacheClient(RedisCacheClient):
    """Django's client builds a new redis.Redis (a few dozen attribute and retry
    objects) around its connection pool for every cache call: three per throttled,
    token-authenticated request. redis.Redis is thread-safe (each command takes a
    connection from the pool), so one per pool is kept."""

    # Django's private members used here (django-stubs declares only the public API).
    _client: type[Redis]
    _get_connection_pool_index: Callable[[bool], int]
    _get_connection_pool: Callable[[bool], ConnectionPool]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Redis] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Redis:
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            client = self._clients[index] = self._client(connection_pool=self._get_connection_pool(write))
        return client


# One client, and so one connection pool, per process and cache configuration. Under
# ASGI Django builds the cache backend anew in every request's context, and with it a
# new pool: a new Redis connection for every request.
_shared_clients: dict[tuple[Any, ...], ReusedClientRedisCacheClient] = {}
_shared_clients_lock = threading.Lock()


class ResilientRedisCache(RedisCache):
    _last_warning = 0.0
    # Set by Django's RedisCache.__init__, not declared by django-stubs.
    _servers: list[str]
    _options: dict[str, Any]
    _class: type[ReusedClientRedisCacheClient]

    def __init__(self, server: Any, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = ReusedClientRedisCacheClient

    @cached_property
    def _cache(self) -> ReusedClientRedisCacheClient:
        key = (tuple(self._servers), repr(sorted(self._options.items())))
        with _shared_clients_lock:
            client = _shared_clients.get(key)
            if client is None:
                client = _shared_clients[key] = self._class(self._servers, **self._options)
            return client

    def _unreachable(self, operation: str, error: BaseException) -> None:
        now = time.monotonic()
        if now - ResilientRedisCache._last_warning >= WARN_EVERY_SECONDS:
            ResilientRedisCache._last_warning = now
            logger.warning("Cache unreachable (%s: %s); answering as a miss", operation, error)

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        try:
            value = super().get(key, _MISSING, version)
        except UNREACHABLE as error:
            self._unreachable("get", error)
            value = _MISSING
        metrics.cache_lookup(key, hit=value is not _MISSING)
        return default if value is _MISSING else value

    def get_many(self, keys: Any, version: int | None = None) -> dict[Any, Any]:
        keys = list(keys)
        try:
            found = super().get_many(keys, version)
        except UNREACHABLE as error:
            self._unreachable("get_many", error)
            found = {}
        for key in keys:
            metrics.cache_lookup(key, hit=key in found)
        return found

    def has_key(self, key: Any, version: int | None = None) -> bool:
        try:
            return super().has_key(key, version)
        except UNREACHABLE as error:
            self._unreachable("has_key", error)
            return False

    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        try:
            return super().add(key, value, timeout, version)
        except UNREACHABLE as error:
            self._unreachable("add", error)
            return False

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        try:
            super().set(key, value, timeout, version)
        except UNREACHABLE as error:
            self._unreachable("set", error)

    def set_many(self, data: dict[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> list[Any]:
        try:
            return super().set_many(data, timeout, version)
        except UNREACHABLE as error:
            self._unreachable("set_many", error)
            return list(data)

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        try:
            return super().touch(key, timeout, version)
        except UNREACHABLE as error:
            self._unreachable("touch", error)
            return False

    def delete(self, key: Any, version: int | None = None) -> bool:
        # A delete that did not happen is an invalidation lost: that one is raised.
        return super().delete(key, version)
