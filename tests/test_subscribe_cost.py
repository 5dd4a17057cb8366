"""What one subscribe costs (issue 20): a reconnect storm is thousands of them, so a
subscribe that misses nothing is answered from Redis (the ticket, the token's cache
entry, the user's stream lease, the reader's cache entry, the stream's head) with no
SQL and no channel-layer join when the process already reads the stream; and the
publisher of a process sends every event on one channel-layer connection.

Everything runs through the project's whole ASGI application (config.asgi) on an
event loop of the test's own, against the real Redis and PostgreSQL: the counts are
of the commands Redis received (MONITOR) and of the SQL any thread sent."""

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import transaction
from knox.models import AuthToken

from config.asgi import application
from contents.selectors import channel_readable
from realtime import streams
from realtime.credentials import token_credential
from realtime.hub import get_hub
from realtime.tickets import ticket_issue
from tests.helpers import make_user
from tests.subscribe_clients import (
    HOST,
    SSE,
    Loop,
    Reader,
    bearer,
    queries,
    redis_round_trips,
    round_trips,
    subscribe_ws,
    ws_subscribe,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def loop(settings) -> Iterator[Loop]:
    # No heartbeat during a test: its reads and lease renewals are not a subscribe's.
    settings.REALTIME_HEARTBEAT_SECONDS = 3600
    running = Loop()
    yield running
    running.close()


@pytest.fixture
def reader(monkeypatch) -> Reader:
    return Reader(monkeypatch)



# --- WebSocket -------------------------------------------------------------------------------


def test_a_websocket_subscribe_that_misses_nothing_costs_six_redis_round_trips_and_no_sql(loop, reader):
    first, subscribed = subscribe_ws(loop, reader, since=None)  # the process now reads the stream
    assert subscribed["type"] == "subscribed"
    reader.ticket_value = reader.ticket()
    with redis_round_trips() as commands, queries() as sql:
        second, subscribed = loop.run(ws_subscribe(reader, since=reader.head))
    assert subscribed["type"] == "subscribed"
    assert sql == []
    # The ticket spent; the token's entry (who opens it, then again once attached to
    # the hub); the user's stream lease; the reader's entry; the stream's head. No
    # channel-layer join: the process is in the user's and the stream's groups already.
    assert [c.strip('"').upper() for c in round_trips(commands)] == ["GETDEL", "GET", "EVALSHA", "GET", "GET", "GET"]
    loop.run(second.disconnect())
    loop.run(first.disconnect())


def test_a_websocket_subscribe_that_missed_events_reads_them_from_the_table(loop, reader):
    with transaction.atomic():
        later = streams.publish(reader.stream, "content_status_update", {"n": 2}).seq
    reader.ticket_value = reader.ticket()
    with queries() as sql:
        communicator, subscribed = loop.run(ws_subscribe(reader, since=reader.head))
        replayed = loop.run(communicator.receive_json_from(timeout=10))
    assert subscribed["type"] == "subscribed"
    assert (replayed["id"], replayed["data"]) == (later, {"n": 2})
    assert sql, "a client behind the head is caught up from the outbox"
    loop.run(communicator.disconnect())


def test_the_first_subscribe_of_a_process_joins_the_groups_once(loop, reader):
    with redis_round_trips() as commands:
        first, _ = subscribe_ws(loop, reader, since=None)
    joins = [c for c in round_trips(commands) if c.strip('"').upper() == "ZADD"]
    assert len(joins) == 2, commands  # the user's group and the stream's
    with redis_round_trips() as commands:
        second, _ = subscribe_ws(loop, reader, since=None)
    assert not [c for c in round_trips(commands) if c.strip('"').upper() == "ZADD"], commands
    loop.run(second.disconnect())
    loop.run(first.disconnect())
    assert not get_hub_of(loop).joined, "the last connection gone, the process leaves the groups"


def get_hub_of(loop: Loop) -> Any:
    async def hub() -> Any:
        return get_hub()

    return loop.run(hub())


# --- SSE -------------------------------------------------------------------------------------


def test_an_sse_subscribe_that_misses_nothing_costs_five_redis_round_trips_and_no_sql(loop, reader):
    first = loop.run(SSE(reader, bearer(reader)).open())
    assert first.status == 200 and first.connected.is_set()
    with redis_round_trips() as commands, queries() as sql:
        second = loop.run(SSE(reader, bearer(reader), last_event_id=reader.head).open())
    assert second.status == 200 and second.connected.is_set(), second.body
    assert sql == []
    # The token's entry (who opens it); the user's stream lease; the token's entry again
    # once attached; the reader's entry once the hub reads the stream; the stream's head.
    assert [c.strip('"').upper() for c in round_trips(commands)] == ["GET", "EVALSHA", "GET", "GET", "GET"]
    loop.run(second.leave())
    loop.run(first.leave())


# --- Who may not subscribe is still refused, from the cache or past it -------------------------


def test_a_token_deleted_without_revocation_is_refused_at_once(loop, reader):
    """The cache's "yes" is trusted only because every deletion of a token's row turns
    its entry into a tombstone (accounts.authentication.forget_deleted_token)."""
    reader.ticket_value = reader.ticket()
    AuthToken.objects.filter(digest=reader.auth_token.digest).delete()

    async def refused() -> dict[str, Any]:
        communicator = WebsocketCommunicator(
            application, f"/api/contents/{reader.channel.id}/ws?ticket={reader.ticket_value}",
            headers=[(b"host", HOST.encode()), (b"origin", f"http://{HOST}".encode())],
        )
        assert (await communicator.connect(timeout=10))[0]
        message = await communicator.receive_json_from(timeout=10)
        assert (await communicator.receive_output(timeout=10))["code"] == 4401
        return message

    assert loop.run(refused())["code"] == "not_authenticated"
    sse = loop.run(SSE(reader, bearer(reader)).open())
    assert sse.status == 401


def test_a_removed_reader_is_refused_though_the_cache_said_yes_before(loop, reader):
    from contents.models import ChannelMembership
    from contents.services import channel_remove_member

    member = make_user("member")
    ChannelMembership.objects.create(channel=reader.channel, user=member)
    assert channel_readable(user=member, channel_id=reader.channel.id)
    _, token = AuthToken.objects.create(user=member)
    channel_remove_member(channel=reader.channel, user_id=member.id)
    sse = loop.run(SSE(reader, {"Authorization": f"Bearer {token}"}).open())
    assert sse.status == 404


# --- The publisher ------------------------------------------------------------------------------


@contextmanager
def layer_clients(group: str) -> Iterator[set[str]]:
    """The client connections (address:port) that sent a command naming the
    channel layer's `group` meanwhile (MONITOR)."""
    # Not bench.reconnect_storm's group_key: importing the bench package raises the
    # per-user stream bound and lifts the per-client one in this process's environment
    # (bench/__init__.py), which every server a later test starts would inherit.
    from channels.layers import get_channel_layer

    from realtime.layer import ResilientRedisChannelLayer

    layer = get_channel_layer()
    assert isinstance(layer, ResilientRedisChannelLayer), "CHANNEL_LAYERS is not the Redis layer"
    key = layer._group_key(group).decode()
    raw = redis.Redis.from_url(settings.REDIS_URL)
    ender = redis.Redis.from_url(settings.REDIS_URL)
    ender.ping()
    clients: set[str] = set()
    with raw.monitor() as monitor:
        marker = f"end-{uuid.uuid4().hex}"
        yield clients
        ender.echo(marker)
        while True:
            seen = monitor.next_command()
            if marker in seen["command"]:
                break
            if key in seen["command"] and seen.get("client_type") != "lua":
                clients.add(f"{seen['client_address']}:{seen['client_port']}")


def test_a_process_publishes_every_event_on_one_channel_layer_connection():
    stream = f"channel:{uuid.uuid4()}"
    with layer_clients(streams.group_name(stream)) as clients:
        for n in range(10):
            with transaction.atomic():
                streams.publish(stream, "content_status_update", {"n": n})
    assert len(clients) == 1, clients
    payloads = [json.dumps(p) for p in streams.Event.objects.filter(stream=stream).values_list("payload", flat=True)]
    assert len(payloads) == 10


def test_a_member_removed_while_their_subscribe_is_checked_is_closed(loop, reader, monkeypatch):
    """The access check is read once the hub reads the stream for the connection: a
    removal whose revoke is sent meanwhile (here: while the check reads an answer from
    before it) still reaches the connection."""
    from asgiref.sync import sync_to_async

    from contents import consumers as consumers_module
    from contents.models import ChannelMembership
    from contents.services import channel_remove_member

    member = make_user("leaving")
    ChannelMembership.objects.create(channel=reader.channel, user=member)
    auth_token, _ = AuthToken.objects.create(user=member)
    ticket = ticket_issue(user_id=member.id, credential=token_credential(auth_token))[0]

    async def read_before_the_removal(user: Any, channel_id: Any) -> bool:
        await sync_to_async(channel_remove_member, thread_sensitive=False)(channel=reader.channel, user_id=member.id)
        return True  # what a read that came just before the removal answered

    monkeypatch.setattr(consumers_module, "may_read_channel", read_before_the_removal)

    async def subscribe() -> list[Any]:
        communicator = WebsocketCommunicator(
            application, f"/api/contents/{reader.channel.id}/ws?ticket={ticket}",
            headers=[(b"host", HOST.encode()), (b"origin", f"http://{HOST}".encode())],
        )
        assert (await communicator.connect(timeout=10))[0]
        await communicator.send_json_to({"type": "subscribe", "channel_id": str(reader.channel.id)})
        outputs = [await communicator.receive_output(timeout=10)]
        while outputs[-1]["type"] != "websocket.close":
            outputs.append(await communicator.receive_output(timeout=10))
        return outputs

    *messages, closed = loop.run(subscribe())
    # Subscribed, or not yet: the revoke may come before or after that answer.
    sent = [json.loads(message["text"]) for message in messages]
    assert [m["code"] for m in sent if m["type"] == "error"] == ["forbidden"], sent
    assert closed == {"type": "websocket.close", "code": 4403}


def test_a_member_removed_while_their_sse_stream_is_checked_is_ended(loop, reader, monkeypatch):
    """As the WebSocket's: the SSE view's access check is read once the hub reads the
    stream for the connection, so a removal's revoke sent meanwhile ends the stream."""
    from asgiref.sync import sync_to_async

    from contents import streams as contents_streams
    from contents.models import ChannelMembership
    from contents.services import channel_remove_member

    member = make_user("leaving")
    ChannelMembership.objects.create(channel=reader.channel, user=member)
    _, token = AuthToken.objects.create(user=member)

    async def read_before_the_removal(user: Any, channel_id: Any) -> bool:
        await sync_to_async(channel_remove_member, thread_sensitive=False)(channel=reader.channel, user_id=member.id)
        return True  # what a read that came just before the removal answered

    monkeypatch.setattr(contents_streams, "may_read_channel", read_before_the_removal)
    sse = loop.run(SSE(reader, {"Authorization": f"Bearer {token}"}).open())
    task = sse.task
    assert task is not None and sse.status == 200

    async def ended() -> None:
        await task  # the response ends by itself: the client never leaves

    loop.run(ended(), timeout=20)
