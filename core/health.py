"""Whether the services the app depends on answer."""

from collections.abc import Callable

import django_rq
import redis
from django.conf import settings
from django.db import connection


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
    """{name: "ok" | "<error>"} for each dependency."""
    results: dict[str, str] = {}
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "down"; its text says why
            results[name] = f"{exc.__class__.__name__}: {exc}"
    return results
