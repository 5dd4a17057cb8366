"""Whether the services the app depends on answer."""

import logging
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
