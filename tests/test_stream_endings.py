"""A stream that must end ends visibly: the SSE response is closed (EventSource then
reconnects with Last-Event-ID) and the WebSocket is closed with a code that says why.
Never open and mute. A database error is not an end: the next heartbeat reads again."""

import asyncio

import pytest
from channels.testing import WebsocketCommunicator
from django.db import OperationalError

from realtime.delivery import StreamCursor
from realtime.sse import event_stream
from realtime.user_consumer import UserEventsConsumer
from tests.conftest import make_user

pytestmark = pytest.mark.django_db(transaction=True)


def failing_catch_up(monkeypatch, error: Exception, *, after: int) -> list[int]:
    """StreamCursor.catch_up works `after` times, then raises `error` every time."""
    calls = [0]
    original = StreamCursor.catch_up

    async def catch_up(self):  # type: ignore[no-untyped-def]
        calls[0] += 1
        if calls[0] > after:
            raise error
        return await original(self)

    monkeypatch.setattr(StreamCursor, "catch_up", catch_up)
    return calls


async def collect(stream, *, limit: float) -> list[str]:  # type: ignore[no-untyped-def]
    frames = []

    async def read() -> None:
        async for frame in stream:
            frames.append(frame)

    await asyncio.wait_for(read(), timeout=limit)
    return frames


def test_an_sse_stream_closes_its_response_on_an_unexpected_error(settings, monkeypatch):
    settings.REALTIME_HEARTBEAT_SECONDS = 0.2
    failing_catch_up(monkeypatch, RuntimeError("boom"), after=1)
    user = make_user()

    frames = asyncio.run(collect(event_stream("channel:ending", user_id=str(user.id), last_event_id=0, named=False), limit=10))

    assert frames[0].startswith("retry:")
    assert frames[-1].startswith(": connected at")  # and then the response ended, instead of hanging


def test_an_sse_stream_keeps_its_heartbeat_through_database_errors(settings, monkeypatch):
    settings.REALTIME_HEARTBEAT_SECONDS = 0.2
    calls = failing_catch_up(monkeypatch, OperationalError("server closed the connection"), after=1)
    user = make_user()

    async def first_frames() -> list[str]:
        stream = event_stream("channel:db-blip", user_id=str(user.id), last_event_id=0, named=False)
        frames = []
        async for frame in stream:
            frames.append(frame)
            if sum(f.startswith(": heartbeat") for f in frames) == 3:
                await stream.aclose()
                break
        return frames

    frames = asyncio.run(asyncio.wait_for(first_frames(), timeout=10))
    assert sum(f.startswith(": heartbeat") for f in frames) == 3
    assert calls[0] >= 4, "each heartbeat tried the table again"


def test_a_websocket_whose_catch_up_fails_unexpectedly_is_closed_with_1011(settings, monkeypatch):
    settings.REALTIME_HEARTBEAT_SECONDS = 0.2
    failing_catch_up(monkeypatch, RuntimeError("boom"), after=1)
    user = make_user()

    async def run() -> dict:
        communicator = WebsocketCommunicator(UserEventsConsumer.as_asgi(), "/v1/ws")
        communicator.scope["user"] = user
        connected, _ = await communicator.connect()
        assert connected
        await communicator.send_json_to({"type": "subscribe"})
        assert (await communicator.receive_json_from(timeout=5))["type"] == "subscribed"
        closing = await communicator.receive_output(timeout=5)
        await communicator.disconnect()
        return closing

    assert asyncio.run(run()) == {"type": "websocket.close", "code": 1011}
