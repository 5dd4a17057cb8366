import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from core.health import check_redis

HOW_TO_START = {
    "PostgreSQL": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "Redis": "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no",
}


class Command(BaseCommand):
    help = "Say exactly which of PostgreSQL and Redis is unreachable, and how to start it."

    def handle(self, *args: Any, **options: Any) -> None:
        import psycopg

        problems: list[str] = []
        db = settings.DATABASES["default"]
        try:
            psycopg.connect(
                host=db.get("HOST") or None, port=db.get("PORT") or None, user=db.get("USER") or None,
                password=db.get("PASSWORD") or None, dbname="postgres", connect_timeout=3,
            ).close()
        except Exception as exc:  # noqa: BLE001 - whatever stops the connection is what this command reports
            problems.append(
                f"PostgreSQL is not reachable at {db.get('HOST')}:{db.get('PORT')} ({exc}).\n"
                f"  Start it with: {HOW_TO_START['PostgreSQL']}\n  or point DATABASE_URL at a running server."
            )
        try:
            check_redis()
        except Exception as exc:  # noqa: BLE001 - whatever stops the connection is what this command reports
            problems.append(
                f"Redis is not reachable at {settings.REDIS_URL} ({exc}).\n"
                f"  Start it with: {HOW_TO_START['Redis']}\n  or point REDIS_URL at a running server."
            )
        if problems:
            self.stderr.write("\n".join(problems))
            sys.exit(1)
        self.stdout.write("PostgreSQL and Redis are reachable.")
