"""Whether the services the app depends on answer, and whether this process should be
sent requests (readiness).

Readiness is off while the process drains: scripts/run_stack.sh, told to stop
(SIGTERM), creates WEB_DRAIN_FILE first and stops the server only
WEB_DRAIN_SECONDS later, so that a load balancer polling /readyz sees 503 and sends
new requests elsewhere while this process still answers the ones it has."""

import hmac
import logging
import os
import time
from collections.abc import Callable

import django_rq
import redis
from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_redis() -> None:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


def check_queue() -> None:
    django_rq.get_queue("default").count  # noqa: B018  (a round trip to the queue's Redis)


CHECKS: dict[str, Callable[[], None]] = {"database": check_database, "redis": check_redis, "queue": check_queue}
# What a process needs to serve requests: without the database it answers nothing
# useful; without the queue nothing it accepts is worked on. (The cache and the channel
# layer's Redis degrade: answered as misses, streams wait for it; /healthz still says so.)
READINESS_CHECKS = ("database", "queue")


def draining() -> bool:
    """Whether this process has been told to stop (the drain file exists)."""
    return drain_started_at() is not None


def drain_started_at() -> float | None:
    """When this process was told to stop (the drain file's time), or None."""
    path = settings.WEB_DRAIN_FILE
    if not path:
        return None
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return None


def readiness() -> tuple[bool, dict[str, object]]:
    """(ready, what to tell): not while draining, nor while a dependency it needs is down.
    Each check's time in ms goes with it, for whoever may read the details."""
    if draining():
        return False, {"status": "draining", "checks": {}, "down": []}
    checks: dict[str, str] = {}
    took: dict[str, float] = {}
    for name in READINESS_CHECKS:
        started = time.monotonic()
        try:
            CHECKS[name]()
            checks[name] = "ok"
        except Exception:  # any failure means "down"
            logger.exception("readiness: %s is down", name)
            checks[name] = "down"
        took[name] = round((time.monotonic() - started) * 1000, 1)
    down = [name for name, result in checks.items() if result != "ok"]
    return not down, {"status": "ok" if not down else "unavailable", "checks": checks, "down": down, "ms": took}


def holds_metrics_token(authorization: str) -> bool:
    """Whether an Authorization header carries METRICS_TOKEN as a bearer token (never
    when none is configured)."""
    token = settings.METRICS_TOKEN
    scheme, _, given = authorization.partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def service_health() -> dict[str, str]:
    """{name: "ok" | "down"} for each dependency. /healthz answers anyone, so why one is
    down (an exception's text names hosts, ports, users, versions) goes to the log only."""
    results: dict[str, str] = {}
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception:  # any failure means "down"
            logger.exception("health check: %s is down", name)
            results[name] = "down"
    return results
