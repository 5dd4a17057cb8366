"""What an idle stream holds in the production server, counted from outside: a real
granian started as `make run` starts it (config.web_server), one worker, threads read
from /proc of that worker (issue 20: memory per idle stream; bench/stream_memory.py
measures the KiB).

An SSE stream's response is made in its request's thread; its frames are sent from
the event loop. Until issue 20 the request kept its one-thread executor (an idle OS
thread, ~40 KiB of an idle SSE stream's ~90) for as long as the stream lived."""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from django.conf import settings
from knox.models import AuthToken

from contents.services import channel_create
from tests.helpers import api_client_for, make_user, run_burst_worker
from tests.live import Granian
from tests.stream_clients import SSECollector, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

STREAMS = 24


@pytest.fixture
def granian(transactional_db) -> Iterator[Granian]:
    # One user and one address open all the streams: the per-user and per-client bounds are raised.
    server = Granian(REALTIME_HEARTBEAT_SECONDS="1", REALTIME_MAX_STREAMS_PER_USER="100", WEB_MAX_OPEN_PER_CLIENT="0")
    yield server
    server.close()


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError(f"no Threads line for {pid}")


def test_idle_sse_streams_hold_no_thread_each_and_still_deliver_and_close(granian):
    """Before: 24 more idle SSE streams were 24 more threads in the worker. Now the
    worker's threads do not grow with its streams (a request's thread goes back to the
    idle ones once its stream's response is made); every stream still gets the next
    event, and each one's close (run on the thread it was opened on, by then serving
    other requests) ends it without an error, giving its user's places back."""
    owner = make_user()
    channel = channel_create(owner=owner, name="footprint")
    _, token = AuthToken.objects.create(user=owner)
    url = granian.url(f"/api/contents/{channel.id}/events")
    headers = {"Authorization": f"Bearer {token}"}
    worker = granian.worker_pid()
    # The first streams start what a worker starts once (the hub, its pools, an executor).
    warm = [SSECollector(url, headers=headers) for _ in range(2)]
    before = threads_of(worker)
    streams = [SSECollector(url, headers=headers) for _ in range(STREAMS)]
    # A REST request between them borrows an idle executor as ever.
    assert httpx.get(granian.url("/v1/auth/me"), headers=headers, timeout=10).status_code == 200
    grown = threads_of(worker) - before
    assert grown <= 2, f"{grown} more threads for {STREAMS} more idle streams"

    api_client_for(owner).post(
        "/api/contents", {"channel_id": str(channel.id), "title": "Held", "description": "A quiet stream."}, format="json",
    )
    run_burst_worker()
    everyone = [*warm, *streams]
    assert wait_for(lambda: all(len(s.ids) >= 1 for s in everyone), timeout=30), [s.ids for s in everyone]

    for stream in everyone:
        stream.close()
    # Every stream ended in the hub (its lease in Redis given back) without an error,
    # its close() run on the executor it had given back.
    leases = redis.Redis.from_url(settings.REDIS_URL)
    key = f"realtime:streams:{owner.id}"
    assert wait_for(lambda: leases.zcard(key) == 0, timeout=30), leases.zrange(key, 0, -1)
    assert "Traceback" not in granian.output(), granian.output()[-3000:]
    assert threads_of(worker) - before <= 2
