"""Streams left idle longer than every timeout in their path, on a daphne that runs
the real defaults (10 s heartbeat, the channel layer's real Redis client settings),
still deliver the next change: a quiet channel is the normal case, not an edge."""

import itertools
import time

import pytest
from knox.models import AuthToken

from contents.services import channel_create
from tests.helpers import api_client_for, make_user, run_burst_worker
from tests.stream_clients import SSECollector, WSCollector, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

IDLE_SECONDS = 32  # past redis-py's 5 s read timeout, the layer's 15 s, two heartbeats


def test_streams_idle_for_30_seconds_keep_their_heartbeat_and_deliver_every_event(production_daphne):
    owner = make_user("quiet")
    channel = channel_create(owner=owner, name="quiet")
    _, token = AuthToken.objects.create(user=owner)
    api = api_client_for(owner)
    sse = SSECollector(
        production_daphne.url(f"/api/contents/{channel.id}/events"), headers={"Authorization": f"Bearer {token}"}
    )
    ticket = api.post("/v1/realtime/tickets").json()["ticket"]
    ws = WSCollector(
        production_daphne.ws_url(f"/api/contents/{channel.id}/ws?ticket={ticket}"),
        origin=production_daphne.origin, subscribe={"type": "subscribe", "channel_id": str(channel.id)},
    )

    time.sleep(IDLE_SECONDS)
    assert sse.ended is None and ws.ended is None, (sse.ended, ws.ended, production_daphne.output()[-3000:])
    # The idle SSE stream said it was alive at the configured period the whole time.
    beats = sse.heartbeats()
    assert len(beats) >= 3 and beats[0] <= 15, sse.comments
    gaps = [later - earlier for earlier, later in itertools.pairwise(beats)]
    assert all(8 <= gap <= 12 for gap in gaps), gaps  # REALTIME_HEARTBEAT_SECONDS = 10, as shipped

    content_id = api.post(
        "/api/contents", {"channel_id": str(channel.id), "title": "Quiet", "description": "Owls hunt at night. Mice hide."},
        format="json",
    ).json()["id"]
    run_burst_worker()

    assert wait_for(lambda: len(sse.ids) >= 4 and len(ws.ids) >= 4, timeout=20), (sse.ids, ws.ids, sse.ended, ws.ended)
    for client in (sse, ws):
        assert client.ids == [1, 2, 3, 4]
        assert {event["content_id"] for event in client.events} == {content_id}
        assert client.events[-1]["status"] == "complete"
    assert "Timeout reading" not in production_daphne.output()
    sse.close()
    ws.close()

