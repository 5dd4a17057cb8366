"""Losing access ends what is already open: a suspended user's SSE and WebSocket
streams stop within seconds (pushed, not found at the next heartbeat), and the
tickets they were issued before are refused."""

import time

import httpx
import pytest
from django.db import transaction
from knox.models import AuthToken

from contents.services import channel_create
from moderation.services import suspend_users
from realtime.access import may_read_stream_sync
from realtime.streams import channel_stream, publish
from tests.helpers import api_client_for, make_user
from tests.stream_clients import SSECollector, WSCollector, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_suspended_users_open_streams_end_and_earlier_tickets_are_refused(production_daphne):
    server = production_daphne
    user = make_user("to-suspend")
    staff = make_user("staff", is_staff=True)
    channel = channel_create(owner=user, name="theirs")
    _, token = AuthToken.objects.create(user=user)
    api = api_client_for(user)
    sse = SSECollector(server.url(f"/api/contents/{channel.id}/events"), headers={"Authorization": f"Bearer {token}"})
    channel_ws = WSCollector(
        server.ws_url(f"/api/contents/{channel.id}/ws?ticket={api.post('/v1/realtime/tickets').json()['ticket']}"),
        origin=server.origin, subscribe={"type": "subscribe", "channel_id": str(channel.id)},
    )
    user_ws = WSCollector(
        server.ws_url(f"/v1/ws?ticket={api.post('/v1/realtime/tickets').json()['ticket']}"),
        origin=server.origin, subscribe={"type": "subscribe"},
    )
    unused_sse_ticket = api.post("/v1/realtime/tickets").json()["ticket"]
    unused_ws_ticket = api.post("/v1/realtime/tickets").json()["ticket"]

    suspended_at = time.monotonic()
    suspend_users(users=[user], by=staff, reason="abuse")

    # Under the real 10 s heartbeat an end within 3 s can only come from the push.
    assert wait_for(lambda: bool(sse.ended and channel_ws.ended and user_ws.ended), timeout=3), (
        sse.ended, channel_ws.ended, user_ws.ended
    )
    print(f"all three streams ended {time.monotonic() - suspended_at:.2f} s after the suspension")
    assert channel_ws.close_code == 4403 and user_ws.close_code == 4403
    assert sse.ended == "closed by the server"

    with transaction.atomic():
        publish(channel_stream(channel.id), "content_status_update", {"content_id": "after-suspension"})
    time.sleep(1)
    assert all(e.get("content_id") != "after-suspension" for e in sse.events + channel_ws.events)

    refused = httpx.get(server.url(f"/api/contents/{channel.id}/events"), params={"ticket": unused_sse_ticket})
    assert refused.status_code == 401
    late = WSCollector(server.ws_url(f"/v1/ws?ticket={unused_ws_ticket}"), origin=server.origin, subscribe={"type": "subscribe"})
    assert wait_for(lambda: late.ended is not None, timeout=5)
    assert late.close_code == 4401
    assert [m.get("code") for m in late.messages] == ["not_authenticated"]


def test_who_may_read_a_channel_stream_is_asked_once_then_read_from_the_cache(django_assert_num_queries):
    """Every SSE and WebSocket subscribe asks realtime.access, which asks the rule
    contents registered for `channel:` streams: a repeated question costs no query."""
    owner, stranger = make_user("owner"), make_user("stranger")
    stream = channel_stream(channel_create(owner=owner, name="cached").id)
    assert may_read_stream_sync(owner, stream) is True
    assert may_read_stream_sync(stranger, stream) is False
    with django_assert_num_queries(0):
        assert may_read_stream_sync(owner, stream) is True
        assert may_read_stream_sync(stranger, stream) is False
        # No rule registered for the kind, or a key that names no channel: read by no one.
        assert may_read_stream_sync(owner, "unregistered:1") is False
        assert may_read_stream_sync(owner, "channel:not-a-uuid") is False
