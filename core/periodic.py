"""Periodic jobs, as the RQ cron (manage.py run_cron) runs them. core knows none of
them: the schedule is assembled in config/ (settings.PERIODIC_JOBS names a function
answering the list), where every app may be imported."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string


@dataclass(frozen=True)
class PeriodicJob:
    func: Callable[..., Any]
    interval: int  # seconds between two runs
    job_timeout: int = 60
    # Further keyword arguments of rq.cron.CronScheduler.register (result_ttl, ttl).
    options: dict[str, Any] = field(default_factory=dict)


def periodic_jobs() -> list[PeriodicJob]:
    schedule: Callable[[], list[PeriodicJob]] = import_string(settings.PERIODIC_JOBS)
    return schedule()
