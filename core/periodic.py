"""Periodic jobs, as the RQ cron (manage.py run_cron) runs them. core knows none of
them: the schedule is assembled in config/ (settings.PERIODIC_JOBS names a function
answering the list), where every app may be imported.

Once per cluster. Every host runs a cron (scripts/run_stack.sh), and every cron keeps
the whole schedule, but each job runs once per period whatever the number of crons:

- Periods are numbered from the epoch, `floor(now / interval)`, so every host names
  them alike, and each cron wakes at the start of each period, not `interval` after
  its own start.
- A cron due to enqueue job J for period k first claims `aistatus:periodic:J:k` with
  SET NX in the queue's Redis; only the cron that set it enqueues (an RQ job whose id
  names J and k, enqueued `unique`, so RQ refuses a second one while its record
  lives). There is no leader: every cron tries every period, so a cron that dies
  costs nothing (the others claim the next period at its start; at most the one
  period whose claim it won in the instant before it enqueued is lost). The claim is
  kept `interval + CLOCK_SKEW_SECONDS`: a host whose clock is behind by less than a
  minute finds the period claimed when it gets there.
- A run that lasts longer than its interval does not overlap itself: the run holds
  `aistatus:periodic:J:running` (RUNNING_LEASE_SECONDS, renewed while it runs); the
  next period's run, on any worker, finds it held and skips (counted "overlapping").
  A work horse killed mid-run holds the job off for at most RUNNING_LEASE_SECONDS.

Each run is counted by job and outcome (aistatus_periodic_runs).
"""

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import django_rq
from django.conf import settings
from django.utils.module_loading import import_string
from redis import Redis
from redis.exceptions import RedisError
from rq import cron_job_registry
from rq.cron import CronJob, CronScheduler
from rq.defaults import DEFAULT_CRON_JOB_HISTORY_LIMIT, DEFAULT_CRON_JOB_HISTORY_TTL
from rq.exceptions import DuplicateJobError
from rq.queue import Queue
from rq.utils import now

from core import metrics

logger = logging.getLogger(__name__)

# How far apart the hosts' clocks may be (NTP keeps them within milliseconds): a period's
# claim outlives the period by this much.
CLOCK_SKEW_SECONDS = 60
# A run's hold on its job, renewed every third of it while the run lasts.
RUNNING_LEASE_SECONDS = 10

_RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


@dataclass(frozen=True)
class PeriodicJob:
    func: Callable[..., Any]
    interval: int  # seconds between two runs
    job_timeout: int = 60
    # Further keyword arguments of rq.cron.CronJob (result_ttl, ttl), given to each run's enqueue.
    options: dict[str, Any] = field(default_factory=dict)


def periodic_jobs() -> list[PeriodicJob]:
    schedule: Callable[[], list[PeriodicJob]] = import_string(settings.PERIODIC_JOBS)
    return schedule()


def periodic_job_names() -> list[str]:
    """Each periodic job's name as the cron and the metrics know it (RQ's CronJob name: the dotted path)."""
    return [f"{job.func.__module__}.{job.func.__name__}" for job in periodic_jobs()]


def period_of(timestamp: float, interval: int) -> int:
    """The number of the period `timestamp` falls in: the same on every host."""
    return int(timestamp // interval)


def period_key(name: str, period: int) -> str:
    return f"aistatus:periodic:{name}:{period}"


def running_key(name: str) -> str:
    return f"aistatus:periodic:{name}:running"


def job_id_of(name: str, period: int) -> str:
    """The RQ job id of a job's run for a period (RQ allows letters, digits, - and _)."""
    return f"periodic-{name.replace('.', '_')}-{period}"


def claim_period(connection: Redis, name: str, period: int, *, interval: int, claimant: str) -> bool:
    """Whether this claimant is the one to enqueue `name` for `period` (the first to ask)."""
    return bool(connection.set(period_key(name, period), claimant, nx=True, ex=interval + CLOCK_SKEW_SECONDS))


class OncePerClusterJob(CronJob):
    """A periodic job whose periods start at multiples of its interval since the epoch,
    enqueued by the cron that claims the period (OncePerClusterCron)."""

    interval: int

    def __init__(self, job: PeriodicJob, queue_name: str) -> None:
        super().__init__(queue_name, func=job.func, interval=job.interval, job_timeout=job.job_timeout, **job.options)

    def get_next_enqueue_time(self) -> datetime:
        base = (self.latest_enqueue_time or now()).timestamp()
        return datetime.fromtimestamp((period_of(base, self.interval) + 1) * self.interval, UTC)

    def enqueue_once(self, connection: Redis, *, claimant: str, at: float | None = None) -> bool:
        """Enqueue the run of the period `at` (now) falls in, if this claimant claims it first."""
        period = period_of(time.time() if at is None else at, self.interval)
        if not claim_period(connection, self.name, period, interval=self.interval, claimant=claimant):
            return False
        try:
            job = Queue(self.queue_name, connection=connection).enqueue(
                run_periodic, args=(self.name, period), job_id=job_id_of(self.name, period), unique=True,
                description=f"{self.name} (period {period}, every {self.interval} s)", **self.job_options,
            )
        except DuplicateJobError:
            return False  # the claim was lost (Redis restarted) but the run is there
        enqueued_at = job.enqueued_at.timestamp() if job.enqueued_at else time.time()
        # RQ's own record of what a cron job enqueued (its dashboard reads it), as CronJob.enqueue keeps it.
        with connection.pipeline() as pipeline:
            pipeline.zadd(self.job_history_key, {job.id: enqueued_at})
            pipeline.zremrangebyrank(self.job_history_key, 0, -(DEFAULT_CRON_JOB_HISTORY_LIMIT + 1))
            pipeline.expire(self.job_history_key, DEFAULT_CRON_JOB_HISTORY_TTL)
            cron_job_registry.add(self.name, pipeline, enqueue_timestamp=enqueued_at)
            pipeline.execute()
        logger.info("Periodic job %s: enqueued for period %d as %s", self.name, period, job.id)
        return True


class OncePerClusterCron(CronScheduler):
    """RQ's cron scheduler, each of whose jobs is enqueued by one cron per period
    however many run against the queue's Redis."""

    def add(self, job: PeriodicJob, queue_name: str = "default") -> OncePerClusterJob:
        cron_job = OncePerClusterJob(job, queue_name)
        self._cron_jobs.append(cron_job)
        return cron_job

    def enqueue_jobs(self) -> list[CronJob]:
        enqueue_time = now()
        enqueued: list[CronJob] = []
        for job in self._cron_jobs:
            # Only the jobs add() registered: one of RQ's register() would not be once per cluster.
            if isinstance(job, OncePerClusterJob) and job.should_run():
                if job.enqueue_once(self.connection, claimant=self.name):
                    enqueued.append(job)
                # Lost or won, this cron's next try is the next period's start.
                job.set_enqueue_time(enqueue_time)
        return enqueued


def build_cron() -> OncePerClusterCron:
    """The cron with every periodic job of settings.PERIODIC_JOBS, named after its host
    and process (the claims it wins record that name)."""
    cron = OncePerClusterCron(
        connection=django_rq.get_connection("default"), name=f"aistatus-cron:{socket.gethostname()}:{os.getpid()}"
    )
    for job in periodic_jobs():
        cron.add(job)
    return cron


@contextmanager
def _running(connection: Redis, name: str) -> Iterator[bool]:
    """Hold the job's running lease while the block runs: True, or False if another run holds it."""
    key, token = running_key(name), f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    if not connection.set(key, token, nx=True, ex=RUNNING_LEASE_SECONDS):
        yield False
        return
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(RUNNING_LEASE_SECONDS / 3):
            try:
                if not connection.eval(_RENEW, 1, key, token, RUNNING_LEASE_SECONDS * 1000):
                    logger.warning("Periodic job %s: its running lease was lost; another run may start", name)
            except RedisError:
                logger.warning("Periodic job %s: its running lease could not be renewed", name, exc_info=True)

    renewer = threading.Thread(target=renew, name=f"lease {name}", daemon=True)
    renewer.start()
    try:
        yield True
    finally:
        stop.set()
        renewer.join()
        try:
            connection.eval(_RELEASE, 1, key, token)
        except RedisError:
            logger.warning("Periodic job %s: its running lease could not be released (it expires)", name, exc_info=True)


def run_periodic(name: str, period: int) -> dict[str, Any]:
    """The RQ task of every periodic job's run: the job (by its dotted path), unless
    its previous run still runs. What it did, and the job's own answer."""
    with _running(django_rq.get_connection("default"), name) as holds:
        if not holds:
            logger.warning("Periodic job %s: period %d skipped, its previous run still runs", name, period)
            metrics.PERIODIC_RUNS.labels(name, "overlapping").inc()
            return {"period": period, "ran": False}
        try:
            result = import_string(name)()
        except BaseException:
            metrics.PERIODIC_RUNS.labels(name, "failed").inc()
            raise
        metrics.PERIODIC_RUNS.labels(name, "ran").inc()
        return {"period": period, "ran": True, "result": result}
