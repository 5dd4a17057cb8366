from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from core.periodic import build_cron


class Command(BaseCommand):
    help = (
        "Run RQ's cron scheduler: the periodic jobs each app contributes (config/schedule.py), each once per "
        "period however many crons share the queue's Redis (core.periodic)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        cron = build_cron()
        names = ", ".join(job.func_name for job in cron.get_jobs())
        self.stdout.write(
            f"{cron.name}: running {names}; stalled contents swept every {settings.CONTENT_SWEEP_INTERVAL} s."
        )
        cron.start()
