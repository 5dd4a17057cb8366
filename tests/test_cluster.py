"""Beyond one machine (issue 19): the cluster of scripts/cluster.py (a load balancer,
two app hosts of `make run`'s production mode, a data host with PostgreSQL, the queue's
Redis and two channel-layer Redis), with clients that connect through the load balancer
from this machine, as users would.

One cluster serves the module's tests, in order; each makes its own users and channel.
Needs root (network namespaces) and Debian's haproxy, postgresql and redis-server
(scripts/install_test_deps.sh installs haproxy); skipped otherwise."""

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from tests.cluster import APP_WS_PORT, APPS, ClusterUnderTest, Fleet, cluster_unavailable, received_wrongly
from tests.stream_clients import SSECollector, WSCollector, status_of, wait_for

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
        # None had to try twice: no host was taken out of the load balancer for
        # answering its readiness checks late while 400 streams connected.
        failed = [(c["kind"], c["errors"]) for c in fleet.report() if c["failed_attempts"]]
        assert failed == [], f"{len(failed)} clients needed more than one attempt: {failed[:5]}"
        print(f"streams held by the load balancer per host: {spread}")
        assert sum(spread.values()) == 400 and all(spread[host] >= 40 for host in APPS), spread
        for host in APPS:  # and each host serves its share itself
            assert cluster.open_streams_metric(host) == spread[host], host
        # Every WebSocket is held by its host's WebSocket server (uvicorn on APP_WS_PORT,
        # ~45 KiB a socket), none by granian (~173): the load balancer routes upgrades there.
        websockets = cluster.streams_at(("websockets",))
        assert sum(websockets.values()) == 200, websockets
        for host in APPS:
            assert cluster.connections_to(host, APP_WS_PORT) == websockets[host], host

        started = time.time()
        with api(cluster, setup["tokens"][0]) as owner:
            publish_events(cluster, owner, channel_id, at_least=EVENTS)
        head = cluster.stream_head(channel_id)
        current = fleet.wait_current(head, timeout=60)
        print(f"{head} events to 400 clients through the load balancer: all current "
              f"{current['t'] - started:.1f} s after the first submit")
        assert current["current"] == 400, current
        outbox = cluster.outbox(channel_id)
        assert len(outbox) == head >= EVENTS
        assert received_wrongly(fleet.report(), outbox) == []
    finally:
        fleet.close()


def sse_url(cluster: ClusterUnderTest, host: str, channel_id: str, ticket: str | None = None) -> str:
    query = f"?ticket={ticket}" if ticket else ""
    return f"http://127.0.0.1:{cluster.forwarded(host)}/api/contents/{channel_id}/events{query}"


def ws_to(cluster: ClusterUnderTest, host: str, channel_id: str, ticket: str) -> WSCollector:
    base = f"127.0.0.1:{cluster.forwarded(host)}"
    return WSCollector(f"ws://{base}/api/contents/{channel_id}/ws?ticket={ticket}", origin=f"http://{base}",
                       subscribe={"type": "subscribe", "channel_id": channel_id})


def mint(cluster: ClusterUnderTest, token: str, host: str) -> str:
    with api(cluster, token, host=host) as client:
        response = client.post("/v1/realtime/tickets")
    assert response.status_code == 201, response.text
    return str(response.json()["ticket"])


@pytest.mark.timeout(300)
def test_tickets_the_stream_bound_and_a_suspension_hold_across_hosts(cluster):
    setup = cluster.make_users(3)
    channel_id = setup["channel_id"]
    opened: list[Any] = []
    try:
        # A ticket minted on one host opens a stream on the other, SSE and WebSocket alike.
        token = setup["tokens"][0]
        sse = SSECollector(sse_url(cluster, "app2", channel_id, mint(cluster, token, "app1")))
        ws = ws_to(cluster, "app1", channel_id, mint(cluster, token, "app2"))
        opened += [sse, ws]
        assert sse.status == 200 and ws.close_code is None and ws.ended is None
        # ...once: the host it was not minted on spent it.
        spent = mint(cluster, token, "app1")
        assert status_of(sse_url(cluster, "app2", channel_id, spent)) == 200
        assert status_of(sse_url(cluster, "app1", channel_id, spent)) == 401

        # A user holding REALTIME_MAX_STREAMS_PER_USER (20) streams on app1 is refused on app2.
        bounded = {"Authorization": f"Bearer {setup['tokens'][1]}"}
        held = [SSECollector(sse_url(cluster, "app1", channel_id), headers=bounded) for _ in range(20)]
        opened += held
        # (A host that could not reach Redis for a lease lets the stream in, counting it in
        # its own process only: its warnings say so, should this ever be 200.)
        leases = redis.Redis.from_url(cluster.redis_url(from_root=True))
        assert status_of(sse_url(cluster, "app2", channel_id), headers=bounded) == 429, (
            {host: cluster.log_lines(host, "Stream leases") for host in APPS},
            {key: leases.zcard(key) for key in leases.scan_iter("realtime:streams:*")},
            setup["users"][1],
        )
        refused = ws_to(cluster, "app2", channel_id, mint(cluster, setup["tokens"][1], "app2"))
        assert refused.close_code == 4429, refused.ended
        # One of them closed on app1 gives the place back on app2.
        held.pop().close()
        assert wait_for(lambda: status_of(sse_url(cluster, "app2", channel_id), headers=bounded) == 200, timeout=20)

        # A suspension, committed on one host, ends the user's streams on both at once.
        victim = setup["tokens"][2]
        on_app1 = SSECollector(sse_url(cluster, "app1", channel_id), headers={"Authorization": f"Bearer {victim}"})
        on_app2 = ws_to(cluster, "app2", channel_id, mint(cluster, victim, "app1"))
        opened += [on_app1, on_app2]
        cluster.django(f"""
import json
from django.contrib.auth import get_user_model
from moderation.services import suspend_users
User = get_user_model()
admin = User.objects.create_superuser(username="root-{uuid.uuid4().hex[:6]}", password="pw")
print(json.dumps(suspend_users(users=[User.objects.get(id="{setup['users'][2]}")], by=admin)))
""", host="app1")
        committed = time.monotonic()
        assert wait_for(lambda: on_app1.ended is not None and on_app2.ended is not None, timeout=15), \
            (on_app1.ended, on_app2.ended)
        print(f"a suspension committed on app1 had ended the user's streams on app1 and app2 "
              f"{time.monotonic() - committed:.1f} s after its snippet returned")
        assert on_app1.ended == "closed by the server"
        assert on_app2.close_code == 4403
        # ...while the other users' streams on both hosts go on.
        assert sse.ended is None and ws.ended is None and held[0].ended is None
    finally:
        for stream in opened:
            with contextlib.suppress(Exception):
                stream.close()


class Submitter:
    """Contents submitted through the load balancer one after another, in a thread, until
    stopped; every answer that is not a 201 is kept."""

    def __init__(self, cluster: ClusterUnderTest, token: str, channel_id: str, *, every: float) -> None:
        self.client = api(cluster, token)
        self.channel_id, self.every = channel_id, every
        self.submitted: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.submitted.append(submit(self.client, self.channel_id))
            except (AssertionError, httpx.HTTPError) as failure:
                self.failures.append(str(failure)[:300])
            self._stop.wait(self.every)

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(30)
        self.client.close()
        return self.submitted


@pytest.mark.timeout(420)
def test_a_rolling_restart_under_load_fails_no_request_and_loses_no_event(cluster):
    # 20 users with 5 SSE and 5 WebSocket clients each, 10 pollers (4 polls a second
    # each) and a content submitted every 3 s, all through the load balancer, while
    # app1 then app2 are told to stop (SIGTERM: each drains, /readyz 503 for 5 s) and
    # started again.
    setup = cluster.make_users(20)
    channel_id = setup["channel_id"]
    fleet = Fleet(cluster, channel_id=channel_id, clients=clients_of(setup, sse=5, ws=5))
    submitter = None
    try:
        assert fleet.wait_live(timeout=90) == 200
        fleet.poll(setup["tokens"][0], pollers=10, interval=0.25)
        submitter = Submitter(cluster, setup["tokens"][0], channel_id, every=3.0)
        for host in APPS:
            stopped_in = cluster.stop_app(host)
            at_lb = cluster.streams_at()
            started = time.monotonic()
            cluster.start_app(host)
            cluster.wait_for_app(host)
            cluster.wait_until(lambda host=host: cluster.lb_up(host), f"{host} up at the LB", "lb")
            print(f"{host}: drained and stopped in {stopped_in:.1f} s (streams then at the LB: {at_lb}), "
                  f"back in service {time.monotonic() - started:.1f} s after its start")
        time.sleep(2)  # load on the restarted pair
        submitted = submitter.stop()
        polled = fleet.poll_stop()
        print(f"polls answered: {polled}; contents submitted: {len(submitted)}")
        assert submitter.failures == []
        assert set(polled) <= {"200", "304"}, polled
        assert sum(polled.values()) > 100

        wait_until_finished(cluster, submitted, within=90)
        head = cluster.stream_head(channel_id)
        assert fleet.wait_current(head, timeout=60)["current"] == 200
        report = fleet.report()
        assert received_wrongly(report, cluster.outbox(channel_id)) == []
        # Every stream moved at least once, and no reconnect was refused: a draining host is out of
        # the load balancer before it refuses new streams (half way through its drain).
        assert all(len(client["connects"]) >= 2 for client in report)
        refused = [(c["kind"], c["errors"], c["server_errors"]) for c in report if c["failed_attempts"]]
        assert refused == [], f"{len(refused)} clients had a reconnect refused: {refused[:5]}"
    finally:
        if submitter is not None:
            submitter.stop()
        fleet.close()


def running(cluster: ClusterUnderTest, content_ids: list[str]) -> int:
    """How many of the contents a worker is running now (a stage past the queue's)."""
    rows = cluster.sql("SELECT count(*) FROM contents_content WHERE id = ANY(%s::uuid[]) "
                       "AND processing_status IN ('summarizing', 'qa_generating')", content_ids)
    return int(rows[0][0])


@pytest.mark.timeout(420)
def test_a_host_killed_mid_pipeline_loses_nothing_its_clients_and_work_move_to_the_other(cluster):
    setup = cluster.make_users(20)
    channel_id = setup["channel_id"]
    fleet = Fleet(cluster, channel_id=channel_id, clients=clients_of(setup, sse=5, ws=5))
    try:
        assert fleet.wait_live(timeout=90) == 200
        before = cluster.streams_at()
        assert all(before[host] >= 20 for host in APPS), (before, cluster.lb_changes())
        with api(cluster, setup["tokens"][0]) as owner:
            contents = [submit(owner, channel_id) for _ in range(3)]
            # Both workers busy (one content in a stage each: a host runs one at a time),
            # so app1's is mid-pipeline when it goes.
            assert wait_for(lambda: running(cluster, contents) == 2, timeout=30, interval=0.02)

            killed_at = time.time()
            cluster.kill_app("app1")  # its cable pulled, every process SIGKILLed
            # Until the load balancer's checks mark app1 down (~3 s), round robin still
            # sends it every other request: each is retried on app2 once its connection
            # fails (1 s), and none fails.
            polled = [owner.get(f"/api/contents/{channel_id}/status").status_code for _ in range(6)]
            assert polled == [200] * 6, polled
            # The first event committed after the kill (a create, retried likewise).
            contents.append(submit(owner, channel_id))
            marker = cluster.stream_head(channel_id)
            current = fleet.wait_current(marker, timeout=60)
            moved_in = current["t"] - killed_at
            assert current["current"] == 200, current
            print(f"app1 killed with {before['app1']} of 200 streams: every client current "
                  f"{moved_in:.1f} s after the kill (streams at the LB then: {cluster.streams_at()})")
            # Within seconds: the load balancer ends a dead host's streams once its checks
            # fail (~3 s), rather than leave each client to notice the silence (an SSE
            # read timeout, a WebSocket ping: 48 s measured without).
            assert moved_in < 20

            # What app1's worker was running is retried by app2's once it has stalled
            # (CONTENT_STALL_SECONDS 10, swept every 2 s), and all complete.
            wait_until_finished(cluster, contents, within=90)
            finished = cluster.sql("SELECT processing_status, attempts, extract(epoch FROM finished_at) "
                                   "FROM contents_content WHERE id = ANY(%s::uuid[])", contents)
            assert {status for status, _, _ in finished} == {"completed"}
            retried = [float(at) - killed_at for _, attempts, at in finished if attempts == 2]
            print(f"app1's mid-pipeline content completed on app2 {retried[0]:.1f} s after the kill, the others "
                  f"{sorted(round(float(at) - killed_at, 1) for _, n, at in finished if n == 1)} s after it")
            assert len(retried) == 1, finished
            # Not before its heartbeat was CONTENT_STALL_SECONDS (10) old, then within a
            # sweep (2 s) and its run (two AI calls of 1 s) on app2's one worker, which
            # also runs what was queued (the marker's) and the periodic jobs (sweeps
            # every 2 s): 25 s of slack on a busy machine.
            assert 10 - 1 < retried[0] < 10 + 2 + 25

        head = cluster.stream_head(channel_id)
        assert fleet.wait_current(head, timeout=60)["current"] == 200
        assert received_wrongly(fleet.report(), cluster.outbox(channel_id)) == []
    finally:
        fleet.close()
        cluster.revive_app("app1")


@pytest.mark.timeout(300)
def test_a_channel_layer_redis_restarted_empty_loses_no_event(cluster):
    setup = cluster.make_users(10)
    channel_id = setup["channel_id"]
    fleet = Fleet(cluster, channel_id=channel_id, clients=clients_of(setup, sse=5, ws=5))
    try:
        assert fleet.wait_live(timeout=90) == 100
        # The channel's group lives on one of the two channel-layer Redis (channels-redis
        # shards the groups over CHANNEL_LAYER_REDIS_URLS); that one is restarted empty.
        group = f"aistatus-test:group:stream.channel.{channel_id}"
        holders = [name for name in ("channels-a", "channels-b") if redis_client(cluster, name).exists(group)]
        assert len(holders) == 1, holders
        restarted = time.time()
        cluster.restart_redis(holders[0])
        assert not redis_client(cluster, holders[0]).exists(group)

        with api(cluster, setup["tokens"][0]) as owner:
            contents = [submit(owner, channel_id) for _ in range(3)]
        wait_until_finished(cluster, contents, within=60)
        head = cluster.stream_head(channel_id)
        current = fleet.wait_current(head, timeout=60)
        assert current["current"] == 100, current
        print(f"{holders[0]} restarted empty: the {head} events committed since reached all 100 clients, the last "
              f"{current['t'] - restarted:.1f} s after the restart; the group joined again: "
              f"{bool(redis_client(cluster, holders[0]).exists(group))}")
        assert received_wrongly(fleet.report(), cluster.outbox(channel_id)) == []
    finally:
        fleet.close()


def redis_client(cluster: ClusterUnderTest, name: str) -> redis.Redis:
    return redis.Redis.from_url(cluster.redis_url(name, from_root=True), socket_timeout=5)
