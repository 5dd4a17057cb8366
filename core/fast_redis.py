"""A lean Redis client for the fast paths (core.fast_path): one connection per event
loop, commands pipelined on it, replies parsed by hiredis in C.

A fast answer costs one Redis round trip, and redis-py's asyncio client spent more CPU
around that trip than the rest of the answer (~105 us a call against ~36 us here,
measured on the same loaded machine): a connection pool, a lock, retries, encoders and
observability per call. Here a call writes its command and waits for its reply in
order (Redis answers a connection's commands in the order they came), so any number of
requests of one process share one connection without waiting for each other.

On anything unexpected (the connection lost, a reply later than the cache's
socket_timeout) the connection is dropped and every call waiting on it fails with a
ConnectionError: the fast path then hands those requests to Django, and the next call
connects again. Plain TCP and Unix sockets (redis://, unix://); for another scheme
(rediss://) the fast path uses redis-py's client instead (RedisPyClient).
"""

import asyncio
import collections
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError


def pack(args: tuple[Any, ...]) -> bytes:
    """A command in RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, float):
            data = repr(arg).encode()  # as redis-py encodes a float
        else:
            data = str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiters: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport: create_connection's

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            waiter = self.waiters.popleft()
            if not waiter.done():  # its caller may have given up (cancelled)
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"Redis connection lost: {exc}"))

    def fail(self, error: Exception) -> None:
        self.lost = True
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)
        if self.transport is not None:
            self.transport.abort()


class LeanClient:
    """Calls on one pipelined connection of this event loop (module docstring)."""

    def __init__(self, url: str, *, timeout: float | None, connect_timeout: float | None) -> None:
        self.options = parse_url(url)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.protocol: _Protocol | None = None
        self.connecting: asyncio.Future[_Protocol] | None = None
        # The loop whose connection this is: its transport, waiters and timers are that loop's.
        self.loop: asyncio.AbstractEventLoop | None = None

    async def _connected(self) -> _Protocol:
        if self.connecting is None:
            self.connecting = asyncio.ensure_future(self._connect())
        try:
            protocol = await asyncio.shield(self.connecting)
        finally:
            if self.connecting is not None and self.connecting.done():
                self.connecting = None
        self.protocol, self.loop = protocol, asyncio.get_running_loop()
        return protocol

    async def _call_once(self, *args: Any) -> Any:
        """One call on a connection of its own, closed after it: for a call from another
        event loop than the connection's, whose waiter the connection's loop would wake
        from the wrong thread and whose timeout would drop that loop's connection under
        every call waiting on it (a stream's end run on another thread's loop did both)."""
        protocol = await self._connect()
        try:
            return await self._command(protocol, *args)
        finally:
            if protocol.transport is not None:
                protocol.transport.close()

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        options = self.options
        async with asyncio.timeout(self.connect_timeout):
            if "path" in options:
                _, protocol = await loop.create_unix_connection(_Protocol, options["path"])
            else:
                _, protocol = await loop.create_connection(_Protocol, options.get("host", "localhost"), options.get("port", 6379))
        # Before any call may use it: a command sent ahead of SELECT would read database 0.
        if options.get("password"):
            credentials = [options["username"], options["password"]] if options.get("username") else [options["password"]]
            await self._command(protocol, "AUTH", *credentials)
        if options.get("db"):
            await self._command(protocol, "SELECT", options["db"])
        return protocol

    async def call(self, *args: Any) -> Any:
        """The reply to one command; an error reply raises ResponseError, a lost or late
        connection ConnectionError (and is dropped)."""
        loop = asyncio.get_running_loop()
        if self.loop is not None and loop is not self.loop:
            if not self.loop.is_closed():
                return await self._call_once(*args)
            self.protocol = self.loop = self.connecting = None  # its loop is gone: this one's now
        protocol = self.protocol
        if protocol is None or protocol.lost:
            protocol = await self._connected()
        return await self._command(protocol, *args)

    async def _command(self, protocol: _Protocol, *args: Any) -> Any:
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        protocol.waiters.append(waiter)
        assert protocol.transport is not None  # connected  # noqa: S101 - set by connection_made
        protocol.transport.write(pack(args))
        late = None
        if self.timeout:
            late = asyncio.get_running_loop().call_later(
                self.timeout, protocol.fail, RedisConnectionError(f"No reply from Redis within {self.timeout} s")
            )
        try:
            reply = await waiter
        finally:
            if late is not None:
                late.cancel()
        if isinstance(reply, hiredis.ReplyError):
            raise ResponseError(str(reply))
        return reply

    async def aclose(self) -> None:
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.close()
        self.protocol = None


class RedisPyClient:
    """The same `call` through redis-py's asyncio client (TLS and whatever else its URL may ask for)."""

    def __init__(self, url: str, *, timeout: float | None, connect_timeout: float | None) -> None:
        self.client = aioredis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=connect_timeout)

    async def call(self, *args: Any) -> Any:
        return await self.client.execute_command(*args)

    async def aclose(self) -> None:
        await self.client.aclose()


def client_for(url: str, *, timeout: float | None, connect_timeout: float | None) -> LeanClient | RedisPyClient:
    if url.startswith(("redis://", "unix://")):
        return LeanClient(url, timeout=timeout, connect_timeout=connect_timeout)
    return RedisPyClient(url, timeout=timeout, connect_timeout=connect_timeout)
