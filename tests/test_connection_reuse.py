"""Connections live for the process, not the request: 40 authenticated API calls to a
real daphne open a handful of PostgreSQL and Redis connections, not one per call
(before: a new PostgreSQL connection and a new Redis client per request)."""

import httpx
import pytest
import redis
from django.conf import settings
from django.db import connection
from knox.models import AuthToken

from tests.helpers import make_user
from tests.live import Daphne

pytestmark = pytest.mark.django_db(transaction=True)

REQUESTS = 40


def postgres_sessions() -> int:
    """Connections ever opened to the test database (pg_stat_database.sessions)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


def redis_connections_received() -> int:
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        return client.info("stats")["total_connections_received"]
    finally:
        client.close()


def test_api_calls_reuse_the_processs_database_and_redis_connections():
    owner = make_user("reuse")
    _, token = AuthToken.objects.create(user=owner)
    server = Daphne()
    try:
        api = httpx.Client(base_url=server.url(""), headers={"Authorization": f"Bearer {token}"}, timeout=10)
        api.get("/v1/credits")  # warm up: the pools open their first connections
        sessions_before, redis_before = postgres_sessions(), redis_connections_received()
        for i in range(REQUESTS):
            # Reads the cache does not answer, so that every call needs the database.
            path = "/v1/notifications/" if i % 2 else "/v1/ai/jobs"
            assert api.get(path).status_code == 200
        sessions_opened = postgres_sessions() - sessions_before
        redis_opened = redis_connections_received() - redis_before - 2  # this test's own two INFO calls
    finally:
        server.stop()

    # Bounded by the pools (DB_POOL_MAX_SIZE per process; a few Redis clients), not by the calls.
    assert sessions_opened <= 3, f"{sessions_opened} PostgreSQL connections for {REQUESTS} requests"
    assert redis_opened <= 8, f"{redis_opened} Redis connections for {REQUESTS} requests"  # 59 without
