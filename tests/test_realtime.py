"""Events reach SSE and WebSocket clients of a real daphne process, in order, once,
only after commit, and only to those who may read the channel."""

import json

import httpx
import pytest
from django.db import transaction
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from contents.models import Channel, ChannelMembership
from contents.services import channel_remove_member
from realtime.models import Event
from realtime.streams import channel_stream, publish
from tests.helpers import api_client_for, make_user, run_burst_worker
from tests.live import Daphne
from tests.stream_clients import ticket

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server():
    daphne = Daphne()
    yield daphne
    daphne.stop()


@pytest.fixture
def owner():
    return make_user("owner")


@pytest.fixture
def api(owner):
    return api_client_for(owner)


@pytest.fixture
def channel_id(api):
    return api.post("/api/channels", {"name": "live"}, format="json").json()["id"]




class SSEReader:
    """Reads SSE frames from a streaming response."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.iter_lines()
        self.replayed: list[dict] = []
        # The stream's position is fixed after the headers are sent; wait for it, as
        # a browser's snapshot-then-stream would, before causing events.
        self.connected_at = self._read_until_connected()

    def _read_until_connected(self) -> int:
        frame: dict = {}
        for line in self.lines:
            if line.startswith(": connected at "):
                return int(line.rsplit(" ", 1)[1])
            if line == "":
                if "data" in frame:
                    self.replayed.append(frame)
                frame = {}
            elif not line.startswith(":"):
                field, _, value = line.partition(":")
                frame[field] = value.lstrip(" ")
        raise EOFError

    def next_event(self) -> dict:
        if self.replayed:
            return self.replayed.pop(0)
        frame: dict = {}
        for line in self.lines:
            if line == "":
                if "data" in frame:
                    return frame
                frame = {}
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            frame[field] = value.lstrip(" ")
        raise EOFError

    def events(self, count: int) -> list[dict]:
        return [self.next_event() for _ in range(count)]


def sse(server, path, token_client, headers=None, params=None, timeout=20):
    params = {**(params or {}), "ticket": ticket(token_client)}
    return httpx.stream("GET", server.url(path), params=params, headers=headers or {}, timeout=timeout)


def submit(api, channel_id, **fields):
    fields.setdefault("title", "Tides")
    fields.setdefault("description", "Tide pools hold sea water. Starfish live in them. Crabs hide under rocks.")
    return api.post("/api/contents", {"channel_id": channel_id, **fields}, format="json").json()["id"]


def test_a_submitted_contents_events_arrive_in_order_on_sse(server, api, channel_id):
    with sse(server, f"/api/contents/{channel_id}/events", api) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        reader = SSEReader(response)
        content_id = submit(api, channel_id)
        run_burst_worker()
        events = reader.events(4)

    assert [int(e["id"]) for e in events] == [1, 2, 3, 4]
    assert all("event" not in e for e in events), "plain messages, so the seed's onmessage sees them"
    data = [json.loads(e["data"]) for e in events]
    assert [(d["type"], d["status"], d["processing_status"]) for d in data] == [
        ("content_status_update", "idle", "uploading"),
        ("content_status_update", "generating", "summarizing"),
        ("content_status_update", "generating", "qa_generating"),
        ("processing_complete", "complete", "completed"),
    ]
    assert all(d["content_id"] == content_id for d in data)
    assert [d["version"] for d in data] == [1, 2, 3, 4]
    assert data[-1]["ai_gen_metadata"]["summary"]


def test_named_events_carry_their_type(server, api, channel_id):
    with sse(server, f"/api/contents/{channel_id}/events", api, params={"named": "true"}) as response:
        reader = SSEReader(response)
        submit(api, channel_id)
        event = reader.next_event()
    assert event["event"] == "content_status_update"


def test_a_rolled_back_change_is_never_sent(server, api, channel_id):
    with sse(server, f"/api/contents/{channel_id}/events", api) as response:
        reader = SSEReader(response)

        def publish_then_roll_back() -> None:
            with transaction.atomic():
                publish(channel_stream(channel_id), "content_status_update", {"content_id": "rolled-back"})
                raise RuntimeError("abort")

        with pytest.raises(RuntimeError):
            publish_then_roll_back()
        submit(api, channel_id)
        event = reader.next_event()
    assert json.loads(event["data"])["content_id"] != "rolled-back"
    assert event["id"] == "1"
    assert not Event.objects.filter(payload__content_id="rolled-back").exists()


def test_reconnecting_with_last_event_id_replays_exactly_what_was_missed(server, api, channel_id):
    submit(api, channel_id)
    run_burst_worker()  # events 1..4
    submit(api, channel_id)  # event 5

    with sse(server, f"/api/contents/{channel_id}/events", api, headers={"Last-Event-ID": "2"}) as response:
        reader = SSEReader(response)
        replayed = reader.events(3)
        run_burst_worker()  # events 6..8, live
        live = reader.events(3)
    assert [int(e["id"]) for e in replayed + live] == [3, 4, 5, 6, 7, 8]


def test_a_client_behind_the_retention_window_is_told_to_resync(server, api, channel_id):
    submit(api, channel_id)
    run_burst_worker()
    Event.objects.filter(stream=channel_stream(channel_id), seq__lte=2).delete()

    with sse(server, f"/api/contents/{channel_id}/events", api, params={"last_event_id": "1"}) as response:
        event = SSEReader(response).next_event()
    assert json.loads(event["data"]) == {"type": "resync", "last_event_id": 4}
    assert event["id"] == "4"


def test_a_non_member_gets_no_stream(server, channel_id):
    stranger = api_client_for(make_user("stranger"))
    response = httpx.get(server.url(f"/api/contents/{channel_id}/events"), params={"ticket": ticket(stranger)})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_a_used_ticket_is_refused(server, api, channel_id):
    used = ticket(api)
    with httpx.stream("GET", server.url(f"/api/contents/{channel_id}/events"), params={"ticket": used}, timeout=10) as first:
        assert first.status_code == 200
    again = httpx.get(server.url(f"/api/contents/{channel_id}/events"), params={"ticket": used})
    assert again.status_code == 401


def test_a_stream_without_credentials_is_a_401(server, channel_id):
    response = httpx.get(server.url(f"/api/contents/{channel_id}/events"))
    assert response.status_code == 401


# --- WebSocket ---------------------------------------------------------------------------


def ws_connect(server, path, client):
    return connect(server.ws_url(f"{path}?ticket={ticket(client)}"), origin=server.origin, open_timeout=10)


def receive(ws, count: int = 1, timeout: float = 20) -> list[dict]:
    return [json.loads(ws.recv(timeout=timeout)) for _ in range(count)]


def test_the_seeds_websocket_subscribe_receives_a_contents_events(server, api, channel_id, owner):
    with ws_connect(server, f"/api/contents/{channel_id}/ws", api) as ws:
        ws.send(json.dumps({"type": "subscribe", "channel_id": channel_id, "user_id": str(owner.id)}))
        (subscribed,) = receive(ws)
        assert subscribed["type"] == "subscribed" and subscribed["channel_id"] == channel_id
        submit(api, channel_id)
        run_burst_worker()
        events = receive(ws, 4)
        ws.send(json.dumps({"type": "ping"}))
        (pong,) = receive(ws)

    assert [(e["type"], e["id"], e["data"]["processing_status"]) for e in events] == [
        ("content_status_update", 1, "uploading"),
        ("content_status_update", 2, "summarizing"),
        ("content_status_update", 3, "qa_generating"),
        ("processing_complete", 4, "completed"),
    ]
    assert [e["data"]["version"] for e in events] == [1, 2, 3, 4]
    assert pong["type"] == "pong"


def test_websocket_since_replays_what_was_missed_then_goes_live(server, api, channel_id):
    submit(api, channel_id)
    run_burst_worker()

    with ws_connect(server, f"/api/contents/{channel_id}/ws", api) as ws:
        ws.send(json.dumps({"type": "subscribe", "channel_id": channel_id, "since": 2}))
        subscribed, *replayed = receive(ws, 3)
        submit(api, channel_id)
        (live,) = receive(ws)

    assert subscribed["type"] == "subscribed"
    assert [e["id"] for e in replayed] == [3, 4]
    assert live["id"] == 5


def test_websocket_since_past_the_window_gets_resync(server, api, channel_id):
    submit(api, channel_id)
    run_burst_worker()
    Event.objects.filter(stream=channel_stream(channel_id), seq__lte=2).delete()

    with ws_connect(server, f"/api/contents/{channel_id}/ws", api) as ws:
        ws.send(json.dumps({"type": "subscribe", "channel_id": channel_id, "since": 0}))
        _, resync = receive(ws, 2)
    assert resync == {"type": "resync", "last_event_id": 4}


def test_a_spoofed_user_id_does_not_subscribe_a_non_member(server, api, channel_id, owner):
    stranger = api_client_for(make_user("stranger"))
    with ws_connect(server, f"/api/contents/{channel_id}/ws", stranger) as ws:
        ws.send(json.dumps({"type": "subscribe", "channel_id": channel_id, "user_id": str(owner.id)}))
        (error,) = receive(ws)
        submit(api, channel_id)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert error == {"type": "error", "code": "forbidden", "detail": "You may not read this channel."}
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


def test_a_socket_without_credentials_is_closed(server, channel_id):
    with connect(server.ws_url(f"/api/contents/{channel_id}/ws"), origin=server.origin) as ws:
        (error,) = receive(ws)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert error["code"] == "not_authenticated"
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


def test_a_socket_from_a_foreign_origin_is_refused(server, api, channel_id):
    with pytest.raises(InvalidStatus):
        connect(server.ws_url(f"/api/contents/{channel_id}/ws?ticket={ticket(api)}"), origin=Origin("https://evil.example"), open_timeout=10)


def test_a_bad_message_gets_an_error_and_the_socket_stays_usable(server, api, channel_id):
    with ws_connect(server, f"/api/contents/{channel_id}/ws", api) as ws:
        ws.send("not json")
        ws.send(json.dumps({"type": "dance"}))
        ws.send(json.dumps({"type": "subscribe", "since": "yesterday"}))
        ws.send(json.dumps({"type": "ping"}))
        replies = receive(ws, 4)
    assert [r["type"] for r in replies] == ["error", "error", "error", "pong"]
    assert [r.get("code") for r in replies[:3]] == ["invalid_json", "unknown_type", "invalid_since"]


def test_unsubscribe_stops_delivery(server, api, channel_id):
    with ws_connect(server, f"/api/contents/{channel_id}/ws", api) as ws:
        ws.send(json.dumps({"type": "subscribe", "channel_id": channel_id}))
        receive(ws)
        ws.send(json.dumps({"type": "unsubscribe"}))
        (unsubscribed,) = receive(ws)
        submit(api, channel_id)
        ws.send(json.dumps({"type": "ping"}))
        (next_message,) = receive(ws)
    assert unsubscribed == {"type": "unsubscribed"}
    assert next_message["type"] == "pong"


def test_a_member_removed_from_the_channel_cannot_subscribe_again(server, api, channel_id):
    member = make_user("member")
    ChannelMembership.objects.create(channel_id=channel_id, user=member)
    member_api = api_client_for(member)
    with sse(server, f"/api/contents/{channel_id}/events", member_api) as while_member:
        assert while_member.status_code == 200
    # Through the service, as the API removes a member: the subscribe check is cached
    # (contents.selectors.channel_readable), and the removal overwrites that entry.
    channel_remove_member(channel=Channel.objects.get(id=channel_id), user_id=member.id)
    response = httpx.get(server.url(f"/api/contents/{channel_id}/events"), params={"ticket": ticket(member_api)})
    assert response.status_code == 404


def test_two_daphne_processes_both_deliver_a_workers_event(server, api, channel_id):
    second = Daphne()
    try:
        with sse(server, f"/api/contents/{channel_id}/events", api) as first_response, \
                sse(second, f"/api/contents/{channel_id}/events", api) as second_response:
            first, other = SSEReader(first_response), SSEReader(second_response)
            submit(api, channel_id)
            run_burst_worker()
            on_first = first.events(4)
            on_second = other.events(4)
    finally:
        second.stop()
    assert [e["id"] for e in on_first] == [e["id"] for e in on_second] == ["1", "2", "3", "4"]
    assert json.loads(on_second[-1]["data"])["type"] == "processing_complete"


def test_an_event_whose_wakeup_never_came_is_still_delivered(server, api, channel_id):
    from realtime.models import Stream

    with sse(server, f"/api/contents/{channel_id}/events", api) as response:
        reader = SSEReader(response)
        # A sender that died between commit and send: the rows exist, no message was sent.
        Stream.objects.create(name=channel_stream(channel_id), last_seq=1)
        Event.objects.create(stream=channel_stream(channel_id), seq=1, type="content_status_update", payload={"content_id": "x", "version": 1})
        event = reader.next_event()
    assert (event["id"], json.loads(event["data"])["content_id"]) == ("1", "x")


def test_the_users_own_socket_gets_their_events_and_nobody_elses(server, owner):
    from realtime.streams import user_stream

    me, other = api_client_for(owner), api_client_for(make_user("other"))
    with ws_connect(server, "/v1/ws", me) as mine, ws_connect(server, "/v1/ws", other) as theirs:
        mine.send(json.dumps({"type": "subscribe"}))
        theirs.send(json.dumps({"type": "subscribe"}))
        assert receive(mine)[0]["type"] == receive(theirs)[0]["type"] == "subscribed"
        with transaction.atomic():
            publish(user_stream(owner.id), "notification", {"id": "n1", "type": "like"})
        (event,) = receive(mine)
        theirs.send(json.dumps({"type": "ping"}))
        (next_for_other,) = receive(theirs)
    assert event == {"type": "notification", "id": 1, "data": {"id": "n1", "type": "like"}}
    assert next_for_other["type"] == "pong"


def test_events_past_the_retention_window_are_pruned():
    from datetime import timedelta

    from django.utils import timezone

    from realtime.streams import prune_events

    with transaction.atomic():
        old = publish("channel:old", "content_status_update", {})
        new = publish("channel:old", "content_status_update", {})
    Event.objects.filter(id=old.id).update(created_at=timezone.now() - timedelta(hours=25))
    assert prune_events(older_than_hours=24) == 1
    assert list(Event.objects.values_list("id", flat=True)) == [new.id]


def test_the_schema_describes_the_streams():
    from rest_framework.test import APIClient

    schema = APIClient().get("/api/schema/?format=json").json()
    sse_op = schema["paths"]["/api/contents/{channel_id}/events"]["get"]
    assert "text/event-stream" in sse_op["responses"]["200"]["content"]
    assert {p["name"] for p in sse_op["parameters"]} >= {"channel_id", "named", "last_event_id", "Last-Event-ID", "ticket"}
    assert "/api/contents/{channel_id}/ws" in schema["paths"] and "/v1/ws" in schema["paths"]
    assert "ProblemDetails" in schema["components"]["schemas"]


def test_removing_a_member_closes_their_open_streams(server, api, channel_id):
    member = make_user("member")
    api.post(f"/api/channels/{channel_id}/members", {"user_ids": [str(member.id)]}, format="json")
    member_api = api_client_for(member)
    with sse(server, f"/api/contents/{channel_id}/events", member_api) as response, \
            ws_connect(server, f"/api/contents/{channel_id}/ws", member_api) as ws:
        reader = SSEReader(response)
        ws.send(json.dumps({"type": "subscribe", "channel_id": channel_id}))
        receive(ws)

        assert api.delete(f"/api/channels/{channel_id}/members/{member.id}").status_code == 204
        submit(api, channel_id)

        with pytest.raises(EOFError):
            reader.next_event()
        (error,) = receive(ws)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert error["code"] == "forbidden"
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


def test_connections_end_at_their_maximum_lifetime(api, channel_id):
    short_lived = Daphne(REALTIME_MAX_CONNECTION_SECONDS="2")
    try:
        with sse(short_lived, f"/api/contents/{channel_id}/events", api) as response:
            reader = SSEReader(response)
            with pytest.raises(EOFError):
                reader.next_event()
        with ws_connect(short_lived, f"/api/contents/{channel_id}/ws", api) as ws, pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=15)
    finally:
        short_lived.stop()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000


def test_an_ai_job_update_reaches_its_owner_on_v1_ws(server, owner):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.media import make_video
    from videos.services import video_upload

    video = video_upload(owner=owner, file=SimpleUploadedFile("v.mp4", make_video(seconds=1)), title="v")
    client = api_client_for(owner)
    with ws_connect(server, "/v1/ws", client) as ws:
        ws.send(json.dumps({"type": "subscribe"}))
        receive(ws)
        job = client.post("/v1/ai/jobs", {"kind": "glitch", "video_id": str(video.id)}, format="json").json()
        client.post(f"/v1/ai/jobs/{job['id']}/cancel")
        messages = receive(ws, 3)
    queued, cancelled = [m for m in messages if m["type"] == "ai_job_update"]
    (notification,) = [m for m in messages if m["type"] == "notification"]
    assert notification["data"]["type"] == "ai_job_failed"
    assert queued["data"] == {"id": job["id"], "status": "queued", "progress": 0, "result_url": None, "error": None, "version": 1}
    assert (cancelled["data"]["status"], cancelled["data"]["error"]) == ("failed", "Cancelled")


def test_a_position_the_stream_never_reached_is_a_resync_not_silence(server, api, channel_id):
    submit(api, channel_id)  # the stream is at 1
    with sse(server, f"/api/contents/{channel_id}/events", api, headers={"Last-Event-ID": "50"}) as response:
        event = SSEReader(response).next_event()
    assert json.loads(event["data"]) == {"type": "resync", "last_event_id": 1}


def test_websocket_since_may_be_the_header_string(server, api, channel_id):
    submit(api, channel_id)
    submit(api, channel_id)
    with ws_connect(server, f"/api/contents/{channel_id}/ws", api) as ws:
        ws.send(json.dumps({"type": "subscribe", "channel_id": channel_id, "since": "1"}))
        subscribed, replayed = receive(ws, 2)
    assert (subscribed["type"], replayed["id"]) == ("subscribed", 2)


def test_a_change_made_through_the_servers_own_api_is_pushed(server, api, channel_id, owner):
    """publish() from a request daphne serves (its on_commit runs in daphne's thread)."""
    from knox.models import AuthToken

    _, token = AuthToken.objects.create(user=owner)
    with sse(server, f"/api/contents/{channel_id}/events", api) as response:
        reader = SSEReader(response)
        created = httpx.post(
            server.url("/api/contents"), headers={"Authorization": f"Bearer {token}"},
            json={"channel_id": channel_id, "title": "Bees", "description": "Bees make honey."},
        )
        assert created.status_code == 201
        event = reader.next_event()
    assert json.loads(event["data"])["content_id"] == created.json()["id"]
