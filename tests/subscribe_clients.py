"""What the tests of a subscribe's cost share (tests/test_subscribe_cost.py,
tests/test_sse_delivery.py): the project's ASGI application driven on an event loop of
the test's own, a warm reader of a channel, an SSE client, and the counts of Redis
commands (MONITOR) and SQL (any thread) meanwhile."""

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import transaction
from django.db.backends.utils import CursorWrapper
from knox.models import AuthToken

from accounts.authentication import BearerTokenAuthentication
from config.asgi import application
from contents.selectors import channel_readable
from realtime import streams
from realtime.credentials import token_credential
from realtime.tickets import ticket_issue
from tests.factories import make_channel
from tests.helpers import make_user

HOST = "127.0.0.1:8000"
# The hub's standing wait on the channel layer: no subscribe's round trip.
STANDING = {"BZPOPMIN"}


class Loop:
    """One event loop for a test: the hub, the Redis clients and the streams of the
    application belong to it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coroutine: Any, timeout: float = 30) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coroutine, timeout))

    def close(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.loop.run_until_complete(cancel_all())
        self.loop.close()




class Reader:
    """A member of a channel with a bearer token whose cache entry is warm (it has
    authenticated once), whose access is cached, on a stream whose head Redis holds."""

    ticket_value = ""  # the ticket of the next WebSocket subscribe

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # The head must outlive the test's slowest step on a busy machine.
        monkeypatch.setattr(streams, "HEAD_SECONDS", 600)
        self.user = make_user("reader")
        self.channel = make_channel(owner=self.user, name="storm")
        self.stream = streams.channel_stream(self.channel.id)
        self.auth_token, self.token = AuthToken.objects.create(user=self.user)
        BearerTokenAuthentication().authenticate_credentials(self.token.encode())
        assert channel_readable(user=self.user, channel_id=self.channel.id)
        with transaction.atomic():
            self.head = streams.publish(self.stream, "content_status_update", {"n": 1}).seq

    def ticket(self) -> str:
        return ticket_issue(user_id=self.user.id, credential=token_credential(self.auth_token))[0]


async def ws_subscribe(reader: Reader, *, since: int | None) -> tuple[WebsocketCommunicator, dict[str, Any]]:
    communicator = WebsocketCommunicator(
        application, f"/api/contents/{reader.channel.id}/ws?ticket={reader.ticket_value}",
        headers=[(b"host", HOST.encode()), (b"origin", f"http://{HOST}".encode())],
    )
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    message: dict[str, Any] = {"type": "subscribe", "channel_id": str(reader.channel.id)}
    if since is not None:
        message["since"] = since
    await communicator.send_json_to(message)
    return communicator, await communicator.receive_json_from(timeout=10)


def subscribe_ws(loop: Loop, reader: Reader, *, since: int | None) -> tuple[WebsocketCommunicator, dict[str, Any]]:
    reader.ticket_value = reader.ticket()  # issued before anything is counted
    return loop.run(ws_subscribe(reader, since=since))


class SSE:
    """GET .../events through the ASGI application, read until the stream says it is
    connected; `leave()` is the client going away."""

    def __init__(self, reader: Reader, headers: dict[str, str], *, last_event_id: int | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.connected = asyncio.Event()
        self.gone = asyncio.Event()
        path = f"/api/contents/{reader.channel.id}/events"
        if last_event_id is not None:
            headers = {**headers, "Last-Event-ID": str(last_event_id)}
        self.scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in {"Host": HOST, **headers}.items()],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
        }
        self.task: asyncio.Task[None] | None = None
        self.requested = False

    async def receive(self) -> dict[str, Any]:
        if not self.requested:
            self.requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        if b": connected at" in message.get("body", b""):
            self.connected.set()

    @property
    def status(self) -> int:
        return self.sent[0]["status"]

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:])

    async def open(self) -> "SSE":
        self.task = asyncio.ensure_future(application(self.scope, self.receive, self.send))
        connected = asyncio.ensure_future(self.connected.wait())
        await asyncio.wait([self.task, connected], return_when=asyncio.FIRST_COMPLETED)
        connected.cancel()
        return self

    async def leave(self) -> None:
        self.gone.set()
        if self.task is not None:
            await self.task


def bearer(reader: Reader) -> dict[str, str]:
    return {"Authorization": f"Bearer {reader.token}", "Accept": "text/event-stream"}


def round_trips(commands: list[str]) -> list[str]:
    return [command for command in commands if command.strip('"').upper() not in STANDING]


@contextmanager
def redis_round_trips() -> Iterator[list[str]]:
    """The commands the cache's Redis received from clients meanwhile (MONITOR; the
    commands a script runs are not round trips of their own)."""
    raw = redis.Redis.from_url(settings.CACHE_REDIS_URL)
    db = raw.connection_pool.connection_kwargs.get("db", 0)
    ender = redis.Redis.from_url(settings.CACHE_REDIS_URL)
    ender.ping()  # connected (and its database selected) before anything is watched
    commands: list[str] = []
    with raw.monitor() as monitor:
        marker = f"end-{uuid.uuid4().hex}"
        yield commands
        ender.echo(marker)
        while True:
            seen = monitor.next_command()
            if marker in seen["command"]:
                break
            if int(seen["db"]) == db and seen.get("client_type") != "lua":
                commands.append(seen["command"].split(" ", 1)[0])


@contextmanager
def queries() -> Iterator[list[str]]:
    """SQL sent by any thread (the full path runs in a thread of its own)."""
    sent: list[str] = []
    original = CursorWrapper.execute

    def counting(self: CursorWrapper, sql: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(sql)
        return original(self, sql, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CursorWrapper, "execute", counting)
        yield sent
