from typing import Any

import django_rq
from django.conf import settings
from django.core.management.base import BaseCommand
from rq.cron import CronScheduler

from core.periodic import periodic_jobs


def build_scheduler() -> CronScheduler:
    """RQ's cron scheduler with every periodic job of settings.PERIODIC_JOBS registered."""
    scheduler = CronScheduler(connection=django_rq.get_connection("default"), name="aistatus-cron")
    for job in periodic_jobs():
        scheduler.register(job.func, "default", interval=job.interval, job_timeout=job.job_timeout, **job.options)
    return scheduler


class Command(BaseCommand):
    help = "Run RQ's cron scheduler: the periodic jobs each app contributes (config/schedule.py)."

    def handle(self, *args: Any, **options: Any) -> None:
        scheduler = build_scheduler()
        names = ", ".join(job.func_name for job in scheduler.get_jobs())
        self.stdout.write(f"Running {names}; stalled contents swept every {settings.CONTENT_SWEEP_INTERVAL} s.")
        scheduler.start()
