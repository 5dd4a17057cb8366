"""Capacity a single user cannot take from everyone else: AI jobs in flight, open
streams (SSE + WebSocket) and WebSocket messages per second. Each limit answers a
clear refusal (a 429 problem, or a WebSocket error and close code) and costs nothing."""

import json
import threading
import time

import httpx
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from knox.models import AuthToken
from rest_framework.test import APIClient
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from aijobs.models import AIJob, CreditEntry
from aijobs.services import JobsInFlightLimitReached, job_create
from contents.services import channel_create
from tests.helpers import api_client_for, make_user
from tests.live import Daphne
from tests.media import make_video
from tests.stream_clients import SSECollector, wait_for
from videos.services import video_upload

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def owner():
    return make_user()


@pytest.fixture
def video(owner):
    return video_upload(owner=owner, file=SimpleUploadedFile("v.mp4", make_video(seconds=1)), title="Clip")


def create_job(client, video):
    return client.post("/v1/ai/jobs", {"kind": "glitch", "video_id": str(video.id), "params": {}}, format="json")


def view_count(video) -> int:
    response = APIClient().post("/v1/videos/batch-metadata", {"video_ids": [str(video.id)]}, format="json")
    return response.json()["videos"][str(video.id)]["view_count"]


def test_a_loop_of_anonymous_views_from_one_address_counts_a_bounded_number_of_times(video, settings):
    """The same client 100 times counts once; a loop that varies its User-Agent (the
    client's to write) to look like new viewers counts at most ANONYMOUS_VIEWER_SLOTS
    times per address and window, not once a call; a second address is another viewer."""
    from videos.views import ANONYMOUS_VIEWER_SLOTS

    settings.VIEW_DEDUP_SECONDS = 1800
    for _ in range(100):
        assert APIClient(REMOTE_ADDR="198.51.100.7", HTTP_USER_AGENT="Firefox").post(f"/v1/videos/{video.id}/view").status_code == 204
    assert view_count(video) == 1
    for n in range(100):
        APIClient(REMOTE_ADDR="198.51.100.7", HTTP_USER_AGENT=f"Bot/{n}").post(f"/v1/videos/{video.id}/view")
    assert view_count(video) == ANONYMOUS_VIEWER_SLOTS  # before: 101
    APIClient(REMOTE_ADDR="198.51.100.8", HTTP_USER_AGENT="Firefox").post(f"/v1/videos/{video.id}/view")
    assert view_count(video) == ANONYMOUS_VIEWER_SLOTS + 1


def test_jobs_in_flight_per_user_are_bounded_and_a_refusal_costs_nothing(owner, video, settings):
    """Before: 30 accepted at once on 80 credits. The limit counts queued and processing jobs."""
    settings.AI_JOB_MAX_IN_FLIGHT_PER_USER = 5
    client = api_client_for(owner)
    answers = [create_job(client, video) for _ in range(30)]

    assert [a.status_code for a in answers] == [202] * 5 + [429] * 25
    refused = answers[-1]
    assert refused["Content-Type"] == "application/problem+json"
    assert int(refused["Retry-After"]) > 0
    problem = refused.json()
    assert problem["status"] == 429 and problem["errors"][0]["code"] == "too_many_jobs_in_flight"
    assert "5" in problem["detail"], problem["detail"]
    assert AIJob.objects.filter(owner=owner).count() == 5
    assert client.get("/v1/credits").json()["balance"] == 100
    assert not CreditEntry.objects.filter(user=owner, amount__lt=0).exists()

    # A finished job (here: cancelled) frees its place; another user has places of their own.
    client.post(f"/v1/ai/jobs/{answers[0].json()['id']}/cancel")
    assert create_job(client, video).status_code == 202
    assert create_job(client, video).status_code == 429
    assert create_job(api_client_for(make_user()), video).status_code == 202


def test_concurrent_creates_never_pass_the_jobs_in_flight_limit(owner, video, settings):
    settings.AI_JOB_MAX_IN_FLIGHT_PER_USER = 3
    # Eight: with the test's own connection, within the process's pool of ten.
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def create() -> None:
        try:
            connection.ensure_connection()  # connected before the start, so that the creates overlap
            barrier.wait(timeout=30)
            job_create(owner=owner, kind="glitch", video=video, params={})
            outcomes.append("created")
        except JobsInFlightLimitReached:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["created"] * 3 + ["refused"] * 5
    assert AIJob.objects.filter(owner=owner).count() == 3


# --- Streams per user, WebSocket message rate, WebSocket origin (a real daphne) ----------


class Streamer:
    """A user of a live server: a channel to stream, a token, tickets for sockets."""

    def __init__(self, server: Daphne) -> None:
        self.server = server
        self.user = make_user()
        self.channel = channel_create(owner=self.user, name="streams")
        _, self.token = AuthToken.objects.create(user=self.user)
        self.headers = {"Authorization": f"Bearer {self.token}"}

    def sse_url(self, server: Daphne | None = None) -> str:
        return (server or self.server).url(f"/api/contents/{self.channel.id}/events")

    def sse(self, server: Daphne | None = None) -> SSECollector:
        return SSECollector(self.sse_url(server), headers=self.headers)

    def sse_answer(self, server: Daphne | None = None) -> httpx.Response:
        """The answer to one more SSE request, read to its headers only."""
        with httpx.stream("GET", self.sse_url(server), headers=self.headers, timeout=10) as response:
            if response.status_code != 200:
                response.read()
            return response

    def ticket(self, server: Daphne | None = None) -> str:
        answer = httpx.post((server or self.server).url("/v1/realtime/tickets"), headers=self.headers, timeout=10)
        return answer.json()["ticket"]

    def ws(self, path: str = "/v1/ws", *, origin: str | None = None, server: Daphne | None = None):
        server = server or self.server
        return connect(server.ws_url(f"{path}?ticket={self.ticket(server)}"), origin=Origin(origin or server.origin), open_timeout=10)


def read_until_closed(ws, into: list[dict]) -> None:
    """Every message the socket receives, into `into`, until it is closed (which raises)."""
    while True:
        into.append(json.loads(ws.recv(timeout=10)))


def refusal_of(ws) -> tuple[dict, int | None]:
    """The error message a socket got before it was closed, and its close code."""
    messages: list[dict] = []
    with pytest.raises(ConnectionClosed) as closed:
        read_until_closed(ws, messages)
    errors = [m for m in messages if m.get("type") == "error"]
    return (errors[-1] if errors else {}), closed.value.rcvd.code if closed.value.rcvd else None


@pytest.fixture
def limited_server():
    server = Daphne(REALTIME_MAX_STREAMS_PER_USER="3", REALTIME_WS_MAX_MESSAGES_PER_SECOND="5")
    yield server
    server.stop()


def test_streams_per_user_are_bounded_over_sse_and_websocket_together(limited_server):
    """Before: sockets per user were unbounded. Three here: the fourth SSE is a 429
    problem, the fourth WebSocket is closed with 4429; another user is not affected, and
    a closed stream gives its place back."""
    alice, bob = Streamer(limited_server), Streamer(limited_server)
    first, second = alice.sse(), alice.sse()
    with alice.ws() as socket:
        socket.send(json.dumps({"type": "ping"}))
        assert json.loads(socket.recv(timeout=10))["type"] == "pong"

        refused = alice.sse_answer()
        assert refused.status_code == 429, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["retry-after"]) > 0
        assert refused.json()["errors"][0]["code"] == "too_many_streams"
        with alice.ws() as fourth:
            error, code = refusal_of(fourth)
        assert (error.get("code"), code) == ("too_many_streams", 4429)

        bobs = [bob.sse(), bob.sse()]
        assert all(stream.status == 200 for stream in bobs)

        first.close()
        assert wait_for(lambda: alice.sse_answer().status_code == 200, timeout=15), "a closed stream's place came back"
        for stream in (second, *bobs):
            stream.close()


def test_streams_dropped_by_their_clients_leave_no_place_taken(limited_server):
    """Ten streams opened and dropped at once, on a limit of three: each gives its
    place back when its client goes."""
    alice = Streamer(limited_server)
    for _ in range(10):
        with httpx.stream("GET", alice.sse_url(), headers=alice.headers, timeout=10) as response:
            assert response.status_code == 200
    streams = [alice.sse() for _ in range(3)]
    assert alice.sse_answer().status_code == 429
    for stream in streams:
        stream.close()


def test_a_sse_response_closed_before_its_first_frame_gives_its_place_back(settings):
    """Django closes a streaming response whose client left before it was iterated; the
    place the response reserved (to be able to answer 429) must not stay taken."""
    import asyncio

    import redis

    from realtime.hub import StreamLeases, get_hub
    from realtime.sse import sse_response

    settings.REALTIME_MAX_STREAMS_PER_USER = 2
    user_id = str(make_user().id)
    leases = redis.Redis.from_url(settings.REDIS_URL)

    async def open_and_drop() -> list[int]:
        statuses = []
        for _ in range(5):
            response = await sse_response("channel:dropped", user_id=user_id, last_event_id=None, named=False)
            statuses.append(response.status_code)
            await asyncio.to_thread(response.close)  # as the ASGI handler does, from a thread
            await asyncio.sleep(0.05)
        assert not get_hub().by_user.get(user_id), "no connection of the user is left in the hub"
        return statuses

    assert asyncio.run(open_and_drop()) == [200] * 5
    assert leases.zcard(StreamLeases.KEY.format(user_id)) == 0


def test_the_stream_limit_holds_across_processes():
    """Each process counts its own streams exactly; Redis leases count them all: two
    streams on one daphne and one on another reach a limit of three."""
    first, second = Daphne(REALTIME_MAX_STREAMS_PER_USER="3"), Daphne(REALTIME_MAX_STREAMS_PER_USER="3")
    try:
        alice = Streamer(first)
        streams = [alice.sse(first), alice.sse(first), alice.sse(second)]
        refused = alice.sse_answer(second)
        assert refused.status_code == 429, "the second process saw only its own stream"
        assert alice.sse_answer(first).status_code == 429
        streams[0].close()
        assert wait_for(lambda: alice.sse_answer(second).status_code == 200, timeout=15)
        for stream in streams[1:]:
            stream.close()
    finally:
        first.stop()
        second.stop()


def test_a_websocket_sending_too_fast_is_told_and_closed_with_4008(limited_server):
    """Before: 1,000 pings in a loop were all answered. At five a second (a burst of five)
    the sixth message of a burst closes the socket with 4008 (policy violation)."""
    alice = Streamer(limited_server)
    with alice.ws() as ws:
        started = time.monotonic()
        for _ in range(50):
            try:
                ws.send(json.dumps({"type": "ping"}))
            except ConnectionClosed:
                break
        answers: list[dict] = []
        with pytest.raises(ConnectionClosed) as closed:
            read_until_closed(ws, answers)
        elapsed = time.monotonic() - started
    pongs = [a for a in answers if a["type"] == "pong"]
    # The burst of 5, and what the bucket refilled (5 a second) while the server read the
    # pings: on a busy machine that takes longer, so the bound is the time it took (the
    # server's reading falls within the client's sending and hearing the close).
    assert 5 <= len(pongs) <= 5 + int(5 * elapsed) + 1, (elapsed, answers)
    assert len(pongs) < 50
    assert answers[-1]["type"] == "error" and answers[-1]["code"] == "too_many_messages"
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4008

    # A client within the rate is never closed.
    with alice.ws() as ws:
        for _ in range(12):
            ws.send(json.dumps({"type": "ping"}))
            assert json.loads(ws.recv(timeout=10))["type"] == "pong"
            time.sleep(0.25)


@pytest.fixture
def trusting_server():
    server = Daphne(CSRF_TRUSTED_ORIGINS="http://app.example.test:3000")
    yield server
    server.stop()


def test_a_websocket_origin_must_match_scheme_host_and_port_exactly(trusting_server):
    """Before: any port or scheme of an allowed host passed (AllowedHostsOriginValidator)."""
    server = trusting_server
    alice = Streamer(server)
    port = server.port
    accepted = [server.origin, "http://app.example.test:3000"]
    refused = [
        f"http://127.0.0.1:{port + 1}",  # another port of this host
        f"https://127.0.0.1:{port}",  # another scheme
        f"http://localhost:{port}",  # another allowed host: another origin
        "http://127.0.0.1",
        "http://app.example.test:3001",
        "https://app.example.test:3000",
        "http://evil.example",
        "null",
    ]
    for origin in accepted:
        with alice.ws(origin=origin) as ws:
            ws.send(json.dumps({"type": "ping"}))
            assert json.loads(ws.recv(timeout=10))["type"] == "pong", origin
    for origin in refused:
        with pytest.raises(InvalidStatus) as denied:
            alice.ws(origin=origin)
        assert denied.value.response.status_code == 403, origin
