"""The seed's three alerts, fired for real: a live stack as `make run` starts it, scraped
every second by a real Prometheus evaluating deploy/prometheus/alerts.yml (its
expressions and thresholds as shipped, its durations shortened: tests/prometheus.py),
and each condition caused from outside: requests slowed by a lock they need, the
database pool held by them until callers wait and time out, the cache Redis filled to
its maxmemory. Each alert is read from Prometheus' own API: pending, then firing once its
`for:` has passed, then gone once the condition is removed."""

import contextlib
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import psycopg
import pytest
import redis
from django.conf import settings
from django.db import connection
from knox.models import AuthToken

from notifications.models import Notification
from tests.helpers import make_user
from tests.live import ROOT, PrivateRedis, Stack
from tests.prometheus import Prometheus, seconds, shortened_rules

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

TOKEN = "alerts-live-test-token"
POOL_SIZE = 2
POOL_TIMEOUT_SECONDS = 2
CACHE_MAXMEMORY = 16 * 1024 * 1024
SEED_ALERTS = ("ApiResponseTimeHigh", "DatabasePoolShortage", "CacheMemoryNearMax")
# Requests the held lock slows: longer than ApiResponseTimeHigh's 1 s threshold.
SLOW_SECONDS = 1.5


@pytest.fixture
def rules():
    return shortened_rules()


@pytest.fixture
def cache_redis():
    server = PrivateRedis()
    client = redis.Redis.from_url(server.url)
    # An evicting cache with a small maxmemory, as a deployment's CACHE_REDIS_URL is.
    client.config_set("maxmemory", CACHE_MAXMEMORY)
    client.config_set("maxmemory-policy", "allkeys-lru")
    yield client
    client.close()
    server.close()


@pytest.fixture
def stack(cache_redis):
    running = Stack(
        redis_url=settings.REDIS_URL,
        CACHE_REDIS_URL=f"redis://127.0.0.1:{cache_redis.connection_pool.connection_kwargs['port']}/0",
        METRICS_TOKEN=TOKEN, METRICS_SAMPLE_SECONDS="1",
        # One web process with a pool of two: a handful of blocked requests exhaust it.
        WEB_WORKERS="1", DB_POOL_MAX_SIZE=str(POOL_SIZE), DB_POOL_TIMEOUT=str(POOL_TIMEOUT_SECONDS),
    )
    yield running
    running.stop()
    shutil.rmtree(ROOT / ".run" / f"metrics-{running.port}", ignore_errors=True)  # run_stack.sh's, left at exit


@pytest.fixture
def prometheus(stack, rules):
    server = Prometheus(target=f"127.0.0.1:{stack.port}", token=TOKEN, rules=rules)
    yield server
    server.close()


class TableLock:
    """An ACCESS EXCLUSIVE lock on a table, in a transaction of the test's own: every
    query of the table waits until it is released, as behind a long migration."""

    def __init__(self, table: str) -> None:
        db = connection.settings_dict
        self.table = table
        self.connection = psycopg.connect(dbname=db["NAME"], user=db["USER"], host=db["HOST"], port=db["PORT"])

    def take(self) -> None:
        self.connection.execute(f'LOCK TABLE "{self.table}" IN ACCESS EXCLUSIVE MODE')

    def release(self) -> None:
        self.connection.rollback()

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def notifications_lock():
    lock = TableLock(Notification._meta.db_table)
    yield lock
    lock.release()
    lock.close()


@pytest.fixture
def api(stack):
    _, token = AuthToken.objects.create(user=make_user("watched"))
    return lambda: httpx.Client(base_url=stack.url(""), headers={"Authorization": f"Bearer {token}"}, timeout=30)


def rule(rules: dict, name: str) -> dict:
    return next(r for g in rules["groups"] for r in g["rules"] if r.get("alert") == name)


def watch(prometheus: Prometheus, name: str, *, until: Callable[[str | None], bool], within: float) -> list[str | None]:
    """The alert's states as Prometheus reports them, read every 0.2 s until `until(state)`."""
    seen: list[str | None] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        state = prometheus.state_of(name)
        if not seen or seen[-1] != state:
            seen.append(state)
        if until(state):
            return seen
        time.sleep(0.2)
    raise AssertionError(f"{name}: states seen {seen}, not done within {within} s")


def fires_then_resolves(
    prometheus: Prometheus, rules: dict, name: str, condition: Callable[[], contextlib.AbstractContextManager[None]]
) -> None:
    """While `condition` holds: the alert goes pending, then firing no sooner than its
    `for:` and within it plus its window and a few scrapes. Once removed: it goes away."""
    shipped = rule(rules, name)
    hold = seconds(shipped["for"])
    window = max([seconds(w) for w in re.findall(r"\[(\d+[smh])\]", shipped["expr"])] or [0])
    assert prometheus.state_of(name) is None
    with condition():
        started = time.monotonic()
        seen = watch(prometheus, name, until=lambda state: state == "firing", within=hold + window + 15)
        fired_after = time.monotonic() - started
    assert "pending" in seen, seen
    assert fired_after >= hold, (name, fired_after)
    removed = time.monotonic()
    watch(prometheus, name, until=lambda state: state is None, within=window + 15)
    print(f"{name}: firing after {fired_after:.1f} s (for: {hold} s), resolved {time.monotonic() - removed:.1f} s after")


def test_the_seed_alerts_fire_in_prometheus_and_resolve(stack, prometheus, rules, api, notifications_lock, cache_redis):
    # Prometheus scrapes the stack with the token.
    deadline = time.monotonic() + 20
    while not prometheus.query('up{job="aistatus"} == 1') and time.monotonic() < deadline:
        time.sleep(0.2)
    assert prometheus.query('up{job="aistatus"} == 1'), prometheus.output()[-2000:]
    # (Others may be pending while the stack settles: its RQ worker registering, say.)
    assert [prometheus.state_of(name) for name in SEED_ALERTS] == [None, None, None]

    @contextlib.contextmanager
    def slow_requests() -> Iterator[None]:
        """One request at a time, each held SLOW_SECONDS by the lock on the table it reads."""
        stop = threading.Event()

        def run() -> None:
            with api() as client:
                while not stop.is_set():
                    notifications_lock.take()
                    request = threading.Thread(target=client.get, args=("/v1/notifications/",))
                    request.start()
                    time.sleep(SLOW_SECONDS)
                    notifications_lock.release()
                    request.join()

        thread = threading.Thread(target=run)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    fires_then_resolves(prometheus, rules, "ApiResponseTimeHigh", slow_requests)

    @contextlib.contextmanager
    def pool_held() -> Iterator[None]:
        """The table locked while requests keep coming: the first POOL_SIZE hold the
        pool's connections waiting for the lock, the others wait for a connection and
        give up after DB_POOL_TIMEOUT (503)."""
        stop = threading.Event()
        answers: list[int] = []

        def run() -> None:
            with api() as client:
                while not stop.is_set():
                    answers.append(client.get("/v1/notifications/").status_code)

        notifications_lock.take()
        threads = [threading.Thread(target=run) for _ in range(POOL_SIZE + 4)]
        for thread in threads:
            thread.start()
        try:
            yield
        finally:
            stop.set()
            notifications_lock.release()
            for thread in threads:
                thread.join()
        assert 503 in answers, answers

    fires_then_resolves(prometheus, rules, "DatabasePoolShortage", pool_held)

    @contextlib.contextmanager
    def cache_full() -> Iterator[None]:
        """The cache's Redis written past its maxmemory (it evicts: used stays at the max)."""
        value = b"x" * 100_000
        for i in range(2 * CACHE_MAXMEMORY // len(value)):
            cache_redis.set(f"filler:{i}", value)
        try:
            yield
        finally:
            cache_redis.flushall()

    fires_then_resolves(prometheus, rules, "CacheMemoryNearMax", cache_full)
