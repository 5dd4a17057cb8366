"""Beyond one machine (issue 19): the cluster of scripts/cluster.py (a load balancer,
two app hosts of `make run`'s production mode, a data host with PostgreSQL, the queue's
Redis and two channel-layer Redis), with clients that connect through the load balancer
from this machine, as users would.

One cluster serves the module's tests, in order; each makes its own users and channel.
Needs root (network namespaces) and Debian's haproxy, postgresql and redis-server
(scripts/install_test_deps.sh installs haproxy); skipped otherwise."""

import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.cluster import APPS, ClusterUnderTest, Fleet, cluster_unavailable, received_wrongly

pytestmark = pytest.mark.skipif(cluster_unavailable() is not None, reason=str(cluster_unavailable()))

EVENTS = 20


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterUnderTest]:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request of the test's own
    with ClusterUnderTest() as started:
        yield started


def api(cluster: ClusterUnderTest, token: str, *, host: str | None = None) -> httpx.Client:
    """A client of the API through the load balancer, or of one app host directly."""
    port = cluster.port if host is None else cluster.forwarded(host)
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20, headers={"Authorization": f"Bearer {token}"})


def submit(client: httpx.Client, channel_id: str) -> str:
    """A text content, with an Idempotency-Key (a retried create is answered as the first)."""
    response = client.post("/api/contents", headers={"Idempotency-Key": uuid.uuid4().hex},
                           json={"channel_id": channel_id, "title": "Tide pools",
                                 "description": "Tide pools form on rocky shores. Many animals live in them."})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def wait_until_finished(cluster: ClusterUnderTest, content_ids: list[str], *, within: float) -> float:
    """Seconds until every content has left the pipeline (completed or failed)."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        rows = cluster.sql("SELECT count(*) FROM contents_content WHERE id = ANY(%s::uuid[]) "
                           "AND processing_status IN ('completed', 'failed')", content_ids)
        if rows[0][0] == len(content_ids):
            return time.monotonic() - started
        time.sleep(0.2)
    states = cluster.sql("SELECT id, processing_status, attempts FROM contents_content WHERE id = ANY(%s::uuid[])",
                         content_ids)
    raise AssertionError(f"contents still in the pipeline after {within} s: {states}")


def publish_events(cluster: ClusterUnderTest, client: httpx.Client, channel_id: str, *, at_least: int) -> list[str]:
    """Contents submitted through the load balancer until their pipelines have put
    `at_least` events in the channel's outbox; all of them finished."""
    submitted: list[str] = []
    while cluster.stream_head(channel_id) < at_least:
        submitted.append(submit(client, channel_id))
        if len(submitted) % 5 == 0:
            wait_until_finished(cluster, submitted, within=60)
    wait_until_finished(cluster, submitted, within=60)
    return submitted


def clients_of(setup: dict[str, Any], *, sse: int, ws: int) -> list[tuple[str, str]]:
    """Per user: `sse` SSE and `ws` WebSocket clients, with that user's token."""
    return [(kind, token) for token in setup["tokens"] for kind in ["sse"] * sse + ["ws"] * ws]


@pytest.mark.timeout(420)
def test_400_clients_spread_over_both_hosts_get_every_event_once_and_in_order(cluster):
    # 40 users, 5 SSE and 5 WebSocket clients each: 200 of each kind, every user well
    # under the per-user bound (20) even with a host's leases left behind.
    setup = cluster.make_users(40)
    channel_id = setup["channel_id"]
    fleet = Fleet(cluster, channel_id=channel_id, clients=clients_of(setup, sse=5, ws=5))
    try:
        assert fleet.wait_live(timeout=120) == 400
        spread = cluster.streams_at()
        print(f"streams held by the load balancer per host: {spread}")
        assert sum(spread.values()) == 400 and all(spread[host] >= 100 for host in APPS), spread
        for host in APPS:  # and each host serves its share itself
            assert cluster.open_streams_metric(host) >= 100, host

        started = time.monotonic()
        with api(cluster, setup["tokens"][0]) as owner:
            publish_events(cluster, owner, channel_id, at_least=EVENTS)
        head = cluster.stream_head(channel_id)
        current = fleet.wait_current(head, timeout=60)
        print(f"{head} events to 400 clients through the load balancer: all current "
              f"{current['t'] - time.time() + time.monotonic() - started:.1f} s after the first submit")
        assert current["current"] == 400, current
        outbox = cluster.outbox(channel_id)
        assert len(outbox) == head >= EVENTS
        assert received_wrongly(fleet.report(), outbox) == []
    finally:
        fleet.close()
