"""The real-time figures: why each stream ended (aistatus_stream_endings_total), the
events that missed their fast path (aistatus_delivery_drops_total) and how late the
wake-ups reach the hubs (aistatus_event_wakeup_lag_seconds), counted where it happens:
streams of a live daphne ended from outside, the failures that no client can cause
(an unexpected error, a refusing channel layer) in this process."""

import asyncio
import shutil
from collections.abc import Callable

import httpx
import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.db import OperationalError, transaction
from knox.models import AuthToken
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed

from contents.services import channel_create
from core import metrics
from realtime import consumers as consumers_module
from realtime import hub as hub_module
from realtime.delivery import StreamCursor
from realtime.hub import get_hub
from realtime.sse import event_stream
from realtime.streams import channel_stream, publish, user_stream
from realtime.user_consumer import UserEventsConsumer
from tests.helpers import make_user
from tests.live import ROOT, Daphne, Stack
from tests.stream_clients import SSECollector, WSCollector, ticket, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "stream-metrics-token"
LIFETIME_SECONDS = 4


def value(text: str, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


class Counts:
    """A metric's growth since this was made, read from an exposition (a server's /metrics
    or this process's own, which sums the same directory)."""

    def __init__(self, read: Callable[[], str]) -> None:
        self.read = read
        self.before = read()

    def grown(self, name: str, **labels: str) -> float:
        return value(self.read(), name, **labels) - value(self.before, name, **labels)


def test_streams_of_a_live_server_are_counted_by_why_they_ended():
    owner = make_user("streams-ending")
    channel = channel_create(owner=owner, name="endings")
    _, token = AuthToken.objects.create(user=owner)
    daphne = Daphne(METRICS_TOKEN=TOKEN, REALTIME_MAX_CONNECTION_SECONDS=str(LIFETIME_SECONDS))
    bearer = {"Authorization": f"Bearer {token}"}
    api = httpx.Client(base_url=daphne.url(""), headers=bearer, timeout=10)
    try:
        counts = Counts(lambda: api.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text)
        sse_url = daphne.url(f"/api/contents/{channel.id}/events")
        ws_url = daphne.ws_url(f"/api/contents/{channel.id}/ws")
        subscribe = {"type": "subscribe", "channel_id": str(channel.id)}

        def websocket() -> WSCollector:
            return WSCollector(f"{ws_url}?ticket={ticket(api)}", origin=daphne.origin, subscribe=subscribe)

        sse_outlived, ws_outlived = SSECollector(sse_url, headers=bearer), websocket()
        sse_left, ws_left = SSECollector(sse_url, headers=bearer), websocket()
        sse_left.close()
        ws_left.close()
        chatty, large = websocket(), websocket()
        for _ in range(40):
            try:
                chatty.send({"type": "ping"})
            except ConnectionClosed:
                break
        large.send({"type": "ping", "padding": "x" * 20_000})

        # An event committed while a stream is open: its wake-up reaches daphne's hub.
        listening = SSECollector(sse_url, headers=bearer)
        with transaction.atomic():
            publish(channel_stream(channel.id), "content_status_update", {"content_id": "lag"})
        assert wait_for(lambda: bool(listening.ids), timeout=10)
        listening.close()

        assert wait_for(
            lambda: all(stream.ended for stream in (sse_outlived, ws_outlived, chatty, large)), timeout=LIFETIME_SECONDS + 10
        )
        assert sse_outlived.ended == "closed by the server"
        assert (ws_outlived.close_code, chatty.close_code, large.close_code) == (4000, 4008, 4009)
        expected = {
            ("sse", "lifetime"): 1, ("ws", "lifetime"): 1,
            ("sse", "client_gone"): 2, ("ws", "client_gone"): 1,
            ("ws", "too_many_messages"): 1, ("ws", "message_too_large"): 1,
            ("sse", "error"): 0, ("ws", "error"): 0,
        }

        def counted() -> dict[tuple[str, str], float]:
            return {
                (transport, reason): counts.grown("aistatus_stream_endings_total", transport=transport, reason=reason)
                for transport, reason in expected
            }

        assert wait_for(lambda: counted() == expected, timeout=10), counted()
        assert counts.grown("aistatus_event_wakeup_lag_seconds_count") == 1
        assert counts.grown("aistatus_event_wakeup_lag_seconds_bucket", le="1.0") == 1
    finally:
        api.close()
        daphne.close()


def test_streams_ended_by_a_stack_told_to_stop_are_counted_as_shutdowns():
    """SIGTERM: run_stack.sh drains (core.health.draining) and the process ends its
    streams half way through (realtime.hub); one that ends otherwise while it drains
    counts as a shutdown too. Read from the stack's own metrics files once it is gone."""
    owner = make_user("stopping")
    channel = channel_create(owner=owner, name="stopping")
    _, token = AuthToken.objects.create(user=owner)
    stack = Stack(redis_url=settings.REDIS_URL, WEB_WORKERS="1", METRICS_TOKEN=TOKEN, WEB_DRAIN_SECONDS="2")
    counted_in = ROOT / ".run" / f"metrics-{stack.port}"
    try:
        bearer = {"Authorization": f"Bearer {token}"}
        api = httpx.Client(base_url=stack.url(""), headers=bearer, timeout=10)
        sse = SSECollector(stack.url(f"/api/contents/{channel.id}/events"), headers=bearer)
        socket = WSCollector(
            stack.ws_url(f"/api/contents/{channel.id}/ws?ticket={ticket(api)}"), origin=stack.origin,
            subscribe={"type": "subscribe", "channel_id": str(channel.id)},
        )
        api.close()
        stack.stop()
        assert sse.ended is not None and socket.ended is not None

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(counted_in))
        left_behind = generate_latest(registry).decode()
        for transport in ("sse", "ws"):
            assert value(left_behind, "aistatus_stream_endings_total", transport=transport, reason="shutdown") == 1
            assert value(left_behind, "aistatus_stream_endings_total", transport=transport, reason="client_gone") == 0
    finally:
        stack.stop()
        shutil.rmtree(counted_in, ignore_errors=True)


def test_a_stream_ended_by_an_unexpected_error_is_counted_as_an_error(monkeypatch):
    counts = Counts(lambda: metrics.exposition().decode())

    async def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(StreamCursor, "on_wakeup", broken)
    monkeypatch.setattr(consumers_module, "deliveries_for", broken)
    user = make_user()

    async def sse() -> None:
        async for frame in event_stream("channel:ending", user_id=str(user.id), last_event_id=0, named=False):
            if frame.startswith(": connected at"):
                get_hub().dispatch({"type": "stream.event", "stream": "channel:ending", "id": 1, "event_type": "x", "data": {}})

    async def websocket() -> None:
        communicator = WebsocketCommunicator(UserEventsConsumer.as_asgi(), "/v1/ws")
        communicator.scope["user"] = user  # type: ignore[typeddict-unknown-key]  # added by the auth middleware
        communicator.scope["session"] = SessionStore()  # type: ignore[typeddict-unknown-key]  # as "user"
        assert (await communicator.connect())[0]
        await communicator.send_json_to({"type": "subscribe"})
        assert (await communicator.receive_json_from(timeout=5))["type"] == "subscribed"
        get_hub().dispatch({"type": "stream.event", "stream": user_stream(user.id), "id": 1, "event_type": "x", "data": {}})
        assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 1011}
        await communicator.disconnect()

    asyncio.run(asyncio.wait_for(sse(), timeout=10))
    asyncio.run(asyncio.wait_for(websocket(), timeout=10))

    assert counts.grown("aistatus_stream_endings_total", transport="sse", reason="error") == 1
    assert counts.grown("aistatus_stream_endings_total", transport="ws", reason="error") == 1
    assert counts.grown("aistatus_stream_endings_total", reason="client_gone") == 0


def test_events_that_miss_their_wake_up_are_counted_as_drops(monkeypatch):
    counts = Counts(lambda: metrics.exposition().decode())
    user = make_user()
    stream = user_stream(user.id)

    # The channel layer refuses the wake-up after commit: the event waits in the table.
    layer = get_channel_layer()

    async def refusing(*args, **kwargs):
        raise ConnectionError("the channel layer's Redis is away")

    monkeypatch.setattr(layer, "group_send", refusing)
    with transaction.atomic():
        for n in range(3):
            publish(stream, "notification", {"n": n})
    monkeypatch.undo()
    assert counts.grown("aistatus_delivery_drops_total", reason="wakeup_not_sent") == 3

    async def hub_reads_the_table() -> None:
        hub = get_hub()
        subscription = await hub.attach(str(user.id))
        await hub.read(subscription, stream)
        subscription.cursor = StreamCursor(stream, 0)
        await hub.read_tables()  # finds the three whose wake-up never came
        await hub.read_tables()  # and counts them once
        await hub.detach(subscription)

    asyncio.run(hub_reads_the_table())
    assert counts.grown("aistatus_delivery_drops_total", reason="wakeup_missed") == 3

    async def failing_read(*args, **kwargs):
        raise OperationalError("server closed the connection")

    monkeypatch.setattr(hub_module, "events_after", failing_read)

    async def hub_cannot_read() -> None:
        hub = get_hub()
        subscription = await hub.attach(str(user.id))
        await hub.read(subscription, stream)
        subscription.cursor = StreamCursor(stream, 0)
        await hub.read_tables()
        await hub.detach(subscription)

    asyncio.run(hub_cannot_read())
    assert counts.grown("aistatus_delivery_drops_total", reason="table_unreadable") == 1

