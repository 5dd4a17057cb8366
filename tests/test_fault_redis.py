"""Redis restarted under the whole stack (`scripts/run_stack.sh`, as `make run` starts
it) while SSE and WebSocket clients are connected and contents are moving: nothing
needs a restart of the app, the events committed while Redis was away reach the
same open connections from the outbox, and the content submitted meanwhile is
processed (its lost enqueue recovered). The Redis is the test's own, on a free port,
restarted without its data (queues, group memberships and tickets all gone)."""

import os
import signal
import subprocess
import time

import httpx
import pytest
from knox.models import AuthToken

from contents.models import Content
from contents.services import channel_create
from tests.helpers import make_user
from tests.live import PrivateRedis, Stack
from tests.stream_clients import SSECollector, WSCollector, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

OUTAGE_SECONDS = 10


@pytest.fixture
def private_redis():
    server = PrivateRedis()
    yield server
    server.close()


@pytest.fixture
def stack(private_redis):
    running = Stack(redis_url=private_redis.url)
    yield running
    running.stop()


def submit(api: httpx.Client, channel_id: str, title: str) -> httpx.Response:
    return api.post(
        "/api/contents",
        json={"channel_id": channel_id, "title": title, "description": f"{title} is a story. It has two sentences."},
    )


def test_a_redis_restart_loses_no_event_and_no_content(private_redis, stack):
    owner = make_user("through-restart")
    channel = channel_create(owner=owner, name="restart")
    _, token = AuthToken.objects.create(user=owner)
    api = httpx.Client(base_url=stack.url(""), headers={"Authorization": f"Bearer {token}"}, timeout=15)
    sse = SSECollector(stack.url(f"/api/contents/{channel.id}/events"), headers={"Authorization": f"Bearer {token}"})
    ticket = api.post("/v1/realtime/tickets").json()["ticket"]
    ws = WSCollector(
        stack.ws_url(f"/api/contents/{channel.id}/ws?ticket={ticket}"),
        origin=stack.origin, subscribe={"type": "subscribe", "channel_id": str(channel.id)},
    )

    before = submit(api, str(channel.id), "Before")
    assert before.status_code == 201
    assert wait_for(lambda: len(sse.ids) >= 4 and len(ws.ids) >= 4, timeout=60), (sse.ids, ws.ids, stack.output()[-3000:])

    private_redis.stop()
    down_at = time.monotonic()
    during = submit(api, str(channel.id), "During")
    assert during.status_code == 201, during.text  # committed: the failed enqueue is the sweep's to repair
    assert api.get(f"/api/contents/{channel.id}/status").status_code == 200
    # Event 5 (the new content, idle/uploading) was committed with no Redis to wake anyone:
    # the open connections read it from the outbox at their heartbeat.
    assert wait_for(lambda: 5 in sse.ids and 5 in ws.ids, timeout=OUTAGE_SECONDS + 5), (sse.ids, ws.ids)
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
    private_redis.start()
    up_at = time.monotonic()

    assert wait_for(lambda: len(sse.ids) >= 8 and len(ws.ids) >= 8, timeout=60), (
        sse.ids, ws.ids, sse.ended, ws.ended, stack.output()[-5000:]
    )
    recovered_after = time.monotonic() - up_at

    during_id = during.json()["id"]
    assert Content.objects.get(id=during_id).status == "complete"
    for client in (sse, ws):
        assert client.ids == [1, 2, 3, 4, 5, 6, 7, 8], client.ids  # every event once, in order
        for content_id in {e["content_id"] for e in client.events}:
            versions = [e["version"] for e in client.events if e["content_id"] == content_id]
            assert versions == [1, 2, 3, 4], (content_id, versions)  # never backwards, never twice
    assert sse.ended is None and ws.ended is None, "the same connections lived through the outage"
    print(f"recovered {recovered_after:.1f} s after Redis came back")

    # Redis is back for the push path too: the next change arrives without waiting for a heartbeat.
    after = submit(api, str(channel.id), "After")
    assert after.status_code == 201
    assert wait_for(lambda: 9 in sse.ids and 9 in ws.ids, timeout=5), (sse.ids, ws.ids)
    sse.close()
    ws.close()


def stack_processes(stack: Stack, name: str) -> list[int]:
    """Pids in the stack's process group whose command line contains `name`, leaving out
    their own forks (an RQ worker's work horse, there whenever a job runs: the view-count
    flush runs every few seconds)."""
    listing = subprocess.run(["ps", "-o", "pid=,ppid=,args=", "-g", str(stack.process.pid)], capture_output=True, text=True,
                             check=False).stdout  # ps exits 1 when no process matches: an empty listing
    matching = {int(line.split()[0]): int(line.split()[1]) for line in listing.splitlines() if name in line and "ps -o" not in line}
    return [pid for pid, parent in matching.items() if parent not in matching]


def test_a_stack_process_that_dies_is_started_again_and_the_rest_go_on(private_redis, stack):
    """The RQ worker quits on some Redis errors (rq's 'unhandled exception, quitting'):
    run_stack.sh starts it again instead of taking daphne down with it."""
    (worker,) = [pid for pid in stack_processes(stack, "rqworker") if pid != stack.process.pid]
    os.kill(worker, signal.SIGKILL)

    owner = make_user("after-a-crash")
    channel = channel_create(owner=owner, name="crash")
    _, token = AuthToken.objects.create(user=owner)
    api = httpx.Client(base_url=stack.url(""), headers={"Authorization": f"Bearer {token}"}, timeout=15)
    content_id = submit(api, str(channel.id), "Afterwards").json()["id"]  # daphne still answers

    assert wait_for(lambda: Content.objects.get(id=content_id).status == "complete", timeout=30), stack.output()[-3000:]
    assert "rqworker exited with status" in stack.output()
    assert worker not in stack_processes(stack, "rqworker")
