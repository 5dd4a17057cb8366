"""A stream that must end ends visibly: the SSE response is closed (EventSource then
reconnects with Last-Event-ID) and the WebSocket is closed with a code that says why.
Never open and mute. A database error is not an end: the hub reads the table again
at its next heartbeat."""

import asyncio

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.sessions.backends.db import SessionStore
from django.db import OperationalError

from realtime import consumers as consumers_module
from realtime import hub as hub_module
from realtime.delivery import StreamCursor
from realtime.hub import get_hub
from realtime.sse import event_stream
from realtime.streams import user_stream
from realtime.user_consumer import UserEventsConsumer
from tests.helpers import make_user

pytestmark = pytest.mark.django_db(transaction=True)


def wake_up(stream: str, seq: int) -> None:
    """What the hub does with a channel-layer message for `stream`, as if one arrived."""
    get_hub().dispatch({"type": "stream.event", "stream": stream, "id": seq, "event_type": "x", "data": {}})


def test_an_sse_stream_closes_its_response_on_an_unexpected_error(monkeypatch):
    async def broken(self, delivery):
        raise RuntimeError("boom")

    monkeypatch.setattr(StreamCursor, "on_wakeup", broken)
    user = make_user()

    async def run() -> list[str]:
        frames = []
        async for frame in event_stream("channel:ending", user_id=str(user.id), last_event_id=0, named=False):
            frames.append(frame)
            if frame.startswith(": connected at"):
                wake_up("channel:ending", 1)
        return frames

    frames = asyncio.run(asyncio.wait_for(run(), timeout=10))  # ends by itself, instead of hanging
    assert frames[0].startswith("retry:")
    assert frames[-1].startswith(": connected at")


def test_an_sse_stream_keeps_its_heartbeat_while_the_table_cannot_be_read(settings, monkeypatch):
    settings.REALTIME_HEARTBEAT_SECONDS = 0.2
    reads = [0]

    async def failing_read(*args, **kwargs):
        reads[0] += 1
        raise OperationalError("server closed the connection")

    monkeypatch.setattr(hub_module, "events_after", failing_read)
    user = make_user()

    async def first_frames() -> list[str]:
        stream = event_stream("channel:db-blip", user_id=str(user.id), last_event_id=0, named=False)
        frames = []
        async for frame in stream:
            frames.append(frame)
            if sum(f.startswith(": heartbeat") for f in frames) == 4:
                await stream.aclose()
                break
        return frames

    frames = asyncio.run(asyncio.wait_for(first_frames(), timeout=10))
    assert sum(f.startswith(": heartbeat") for f in frames) == 4
    assert reads[0] >= 2, "the hub tried the table again at each heartbeat"


def test_a_websocket_whose_delivery_fails_unexpectedly_is_closed_with_1011(monkeypatch):
    async def broken(cursor, item):
        raise RuntimeError("boom")

    monkeypatch.setattr(consumers_module, "deliveries_for", broken)
    user = make_user()

    async def run() -> dict:
        communicator = WebsocketCommunicator(UserEventsConsumer.as_asgi(), "/v1/ws")
        communicator.scope["user"] = user  # type: ignore[typeddict-unknown-key]  # the stubs' test scope has ASGI's keys only; auth middleware adds "user"
        communicator.scope["session"] = SessionStore()  # type: ignore[typeddict-unknown-key]  # as "user": the session the user logged in with
        connected, _ = await communicator.connect()
        assert connected
        await communicator.send_json_to({"type": "subscribe"})
        assert (await communicator.receive_json_from(timeout=5))["type"] == "subscribed"
        wake_up(user_stream(user.id), 1)
        closing = await communicator.receive_output(timeout=5)
        await communicator.disconnect()
        return closing

    assert asyncio.run(run()) == {"type": "websocket.close", "code": 1011}
