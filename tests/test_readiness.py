"""Liveness and readiness apart: /livez says the process answers, /readyz whether it
should be sent requests. A stack told to stop (SIGTERM) answers /readyz 503 at once and
keeps serving what it has for WEB_DRAIN_SECONDS, so that a load balancer drains it
before its streams close."""

import contextlib
import signal
import time
from collections.abc import Iterator

import httpx
import pytest
from django.conf import settings
from knox.models import AuthToken
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from contents.services import channel_create
from tests.helpers import make_user, wait_for
from tests.live import Daphne, PrivateRedis, Stack
from tests.stream_clients import SSECollector, WSCollector


@pytest.mark.django_db
def test_livez_answers_without_looking_at_any_dependency(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        answer = client.get("/livez")
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_ready_when_the_database_and_the_queue_answer(client):
    answer = client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json()["checks"] == {"database": "ok", "queue": "ok"}
    assert "ms" not in answer.json(), "how long the checks took is for the metrics token"


@pytest.mark.django_db
def test_readyz_says_which_dependency_is_down_and_its_details_only_to_the_metrics_token(client, settings, monkeypatch):
    import django_rq.settings

    # The queue's Redis where nothing listens: really down (django-rq reads its queues'
    # settings once, at import).
    monkeypatch.setitem(django_rq.settings.QUEUES, "default", {"URL": "redis://127.0.0.1:1/0", "DEFAULT_TIMEOUT": 300})
    settings.METRICS_TOKEN = "scraper-token"
    answer = client.get("/readyz")
    assert answer.status_code == 503
    body = answer.json()
    assert body["down"] == ["queue"] and body["checks"]["database"] == "ok"
    assert "Error" not in answer.content.decode() and "127.0.0.1" not in answer.content.decode()
    detailed = client.get("/readyz", headers={"Authorization": "Bearer scraper-token"}).json()
    assert set(detailed["ms"]) == {"database", "queue"}


@pytest.mark.django_db
def test_readyz_is_503_while_the_process_drains(client, settings, tmp_path):
    settings.WEB_DRAIN_FILE = str(tmp_path / "draining")
    assert client.get("/readyz").status_code == 200
    (tmp_path / "draining").touch()
    answer = client.get("/readyz")
    assert answer.status_code == 503 and answer.json()["status"] == "draining"
    assert client.get("/livez").status_code == 200, "a draining process is alive"


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    yield server
    server.close()


@pytest.mark.timeout(120)
def test_sigterm_turns_readyz_503_at_once_and_streams_close_only_after_the_drain(transactional_db, private_redis):
    """The stack as `make run` runs it, draining 4 s: after SIGTERM /readyz answers 503
    within a second while an open SSE stream is still open and a request is still
    served; the stream ends after the drain, and the stack exits."""
    owner = make_user("draining")
    channel = channel_create(owner=owner, name="drain")
    _, token = AuthToken.objects.create(user=owner)
    stack = Stack(redis_url=private_redis.url, WEB_DRAIN_SECONDS="4")
    try:
        headers = {"Authorization": f"Bearer {token}"}
        sse = SSECollector(stack.url(f"/api/contents/{channel.id}/events"), headers=headers)
        assert httpx.get(stack.url("/readyz"), timeout=5).status_code == 200

        stack.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        status = 200
        while status == 200 and time.monotonic() - signalled < 3:
            status = httpx.get(stack.url("/readyz"), timeout=5).status_code
            time.sleep(0.05)
        turned_after = time.monotonic() - signalled
        assert status == 503, "/readyz never turned 503 after SIGTERM"
        assert turned_after < 1.0, turned_after
        assert sse.ended is None, f"the stream closed before the drain ended: {sse.ended}"
        assert httpx.get(stack.url("/v1/auth/me"), headers=headers, timeout=5).status_code == 200

        wait_for(lambda: sse.ended is not None, timeout=10, what="the stream ended by the drain")
        ended_after = time.monotonic() - signalled
        stack.process.wait(timeout=40)
        stopped_after = time.monotonic() - signalled
        # Half way through the drain, before the stack stops: its client reconnects elsewhere.
        assert 1.5 <= ended_after < stopped_after, (ended_after, stopped_after)
        assert stopped_after >= 4, stopped_after
        print(f"/readyz 503 after {turned_after * 1000:.0f} ms; the stack stopped {stopped_after:.1f} s after SIGTERM")
    finally:
        stack.stop()
        stack.log_path.unlink(missing_ok=True)
    assert settings.WEB_DRAIN_FILE == ""  # the suite's own process never drains


def test_a_draining_process_ends_its_streams_half_way_and_takes_no_new_ones(transactional_db, tmp_path):
    """Half way through the drain the streams end so that their clients reconnect
    elsewhere (SSE: the response ends, EventSource reconnects with Last-Event-ID; a
    WebSocket: 4000, which the client kit reopens at once); a new stream is refused
    (SSE: 503 with Retry-After; a WebSocket: 4012) so it goes to another host."""
    drain_file = tmp_path / "draining"
    server = Daphne(WEB_DRAIN_FILE=str(drain_file), WEB_DRAIN_SECONDS="2")
    try:
        owner = make_user("drained")
        channel = channel_create(owner=owner, name="drain")
        _, token = AuthToken.objects.create(user=owner)
        headers = {"Authorization": f"Bearer {token}"}
        sse = SSECollector(server.url(f"/api/contents/{channel.id}/events"), headers=headers)

        def ticket() -> str:
            return httpx.post(server.url("/v1/realtime/tickets"), headers=headers, timeout=10).json()["ticket"]

        ws = WSCollector(server.ws_url(f"/v1/ws?ticket={ticket()}"), origin=server.origin, subscribe={"type": "subscribe"})
        drain_file.touch()
        started = time.monotonic()
        wait_for(lambda: sse.ended is not None and ws.ended is not None, timeout=10, what="both streams ended")
        ended_after = time.monotonic() - started
        assert 0.9 <= ended_after < 3, ended_after
        assert sse.ended == "closed by the server" and ws.ended == "closed 4000"

        refused = httpx.get(server.url(f"/api/contents/{channel.id}/events"), headers=headers, timeout=10)
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
        assert refused.json()["errors"][0]["code"] == "server_draining"

        messages: list[str | bytes] = []
        with connect(server.ws_url(f"/v1/ws?ticket={ticket()}"), origin=server.origin, open_timeout=10) as socket, \
                contextlib.suppress(ConnectionClosed):
            messages.extend(socket)
        assert socket.close_code == 4012 and "server_draining" in messages[-1], (socket.close_code, messages)
    finally:
        server.close()
