"""SSE on the WebSocket's path (issue 20): an event is serialised and its frame
encoded once, whatever the number of SSE connections, and each connection writes
those very bytes; an SSE connection waits on its inbox alone (its heartbeat is timed
by the hub), and still says it is alive when quiet.

Through the project's whole ASGI application (config.asgi) on an event loop of the
test's own, with events published through the real channel layer."""

import asyncio
import json
from typing import Any

import pytest
from django.db import transaction

from realtime import delivery as delivery_module
from realtime import streams
from tests.subscribe_clients import SSE, Loop, Reader, bearer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def loop(settings):
    settings.REALTIME_HEARTBEAT_SECONDS = 3600
    running = Loop()
    yield running
    running.close()


@pytest.fixture
def reader(monkeypatch) -> Reader:
    return Reader(monkeypatch)


class CountingJson:
    """realtime.delivery's json, counting what it serialises."""

    def __init__(self) -> None:
        self.dumps_calls = 0

    def dumps(self, value: Any, **kwargs: Any) -> str:
        self.dumps_calls += 1
        return json.dumps(value, **kwargs)


def frames_of(connection: SSE, seq: int) -> list[bytes]:
    return [m["body"] for m in connection.sent[1:] if m.get("body", b"").startswith(f"id: {seq}\n".encode())]


async def delivered(connections: list[SSE], seq: int) -> None:
    while not all(frames_of(c, seq) for c in connections):  # noqa: ASYNC110 - the frames arrive through the server's send
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("subscribers", [1, 6])
def test_an_event_is_serialised_once_and_every_sse_connection_writes_the_same_bytes(loop, reader, monkeypatch, subscribers):
    counting = CountingJson()
    monkeypatch.setattr(delivery_module, "json", counting)
    connections = [loop.run(SSE(reader, bearer(reader)).open()) for _ in range(subscribers)]
    assert all(c.status == 200 and c.connected.is_set() for c in connections)
    with transaction.atomic():
        seq = streams.publish(reader.stream, "content_status_update", {"content_id": "c", "version": 2}).seq
    loop.run(delivered(connections, seq), timeout=20)

    frames = [frames_of(c, seq) for c in connections]
    assert all(len(f) == 1 for f in frames), frames
    first = frames[0][0]
    assert first == f'id: {seq}\ndata: {{"type":"content_status_update","content_id":"c","version":2}}\n\n'.encode()
    # One object written by every connection: built once, encoded once, never copied.
    assert all(f[0] is first for f in frames)
    assert counting.dumps_calls == 1
    for connection in connections:
        loop.run(connection.leave())


def test_a_quiet_sse_connection_gets_its_heartbeat_from_the_hub(loop, reader, settings):
    settings.REALTIME_HEARTBEAT_SECONDS = 0.4
    connection = loop.run(SSE(reader, bearer(reader)).open())

    async def heartbeats(count: int) -> None:
        while connection.body.count(b": heartbeat") < count:  # noqa: ASYNC110 - written through the server's send
            await asyncio.sleep(0.05)

    loop.run(heartbeats(2), timeout=20)
    with transaction.atomic():
        seq = streams.publish(reader.stream, "content_status_update", {"n": 2}).seq
    loop.run(delivered([connection], seq), timeout=20)
    loop.run(heartbeats(3), timeout=20)
    assert connection.body.rstrip().endswith(f": heartbeat {seq}".encode())
    loop.run(connection.leave())


def test_an_sse_connection_ends_at_its_lifetime(loop, reader, settings):
    settings.REALTIME_MAX_CONNECTION_SECONDS = 1
    connection = loop.run(SSE(reader, bearer(reader)).open())
    task = connection.task
    assert task is not None

    async def ended() -> None:
        await task  # the response ends by itself: nobody leaves

    loop.run(ended(), timeout=20)
    assert connection.sent[-1] == {"type": "http.response.body"}
