"""What the metrics read rather than count: the database pool, sampled by each process
for itself, and at scrape time the Redis servers, the queues and whether the stack's
dependencies answer.

The pool is per process (psycopg's, through Django), so only its own process can read
it: a daemon thread samples it every METRICS_SAMPLE_SECONDS into the multiprocess
gauges (core.metrics). Everything else is shared by the processes and read once, by
the one answering the scrape (ScrapeTimeCollector), with short timeouts: a scrape must
answer while a dependency is away, as that is when it is needed.
"""

import logging
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import django_rq
import psycopg
import redis
from django.conf import settings
from django.db import connections
from prometheus_client.core import GaugeMetricFamily, Metric
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.queue import Queue
from rq.worker import Worker

from core import metrics

logger = logging.getLogger(__name__)

# A scrape waits at most this long for each dependency (PostgreSQL's connect_timeout
# counts whole seconds, 2 at least).
CHECK_TIMEOUT_SECONDS = 2


# --- The database pool, sampled by its process ------------------------------------------


def database_pool() -> Any | None:
    """This process's pool of the default database, if it has one yet (never creates it)."""
    pools = getattr(type(connections["default"]), "_connection_pools", None)
    return pools.get("default") if pools else None


class PoolSampler:
    """Copies a pool's stats into the metrics: its gauges as they are now, its counters
    (psycopg counts since the pool was made) by what they grew since the last sample.
    One per process, called by its thread and by a scrape this process answers."""

    def __init__(self) -> None:
        self.pool: Any | None = None
        self.last: dict[str, int] = {}
        self.lock = threading.Lock()

    def sample(self) -> None:
        with self.lock:
            self._sample()

    def _sample(self) -> None:
        pool = database_pool()
        if pool is None:
            return
        stats = pool.get_stats()
        if pool is not self.pool:  # a new pool (the old one closed) counts from zero
            self.pool, self.last = pool, {}
        size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
        metrics.DB_POOL_CONNECTIONS.labels("in_use").set(max(0, size - idle))
        metrics.DB_POOL_CONNECTIONS.labels("idle").set(idle)
        metrics.DB_POOL_MAX.set(stats.get("pool_max", 0))
        metrics.DB_POOL_WAITING.set(stats.get("requests_waiting", 0))
        for name, counter, scale in (
            ("requests_queued", metrics.DB_POOL_WAITS, 1),
            ("requests_wait_ms", metrics.DB_POOL_WAIT_SECONDS, 1000),
            ("requests_errors", metrics.DB_POOL_TIMEOUTS, 1),
        ):
            grown = stats.get(name, 0) - self.last.get(name, 0)
            if grown > 0:
                counter.inc(grown / scale)
            self.last[name] = stats.get(name, 0)


# This process's sampler, and the process it was started in (a forked child starts its
# own: threads do not survive a fork).
_sampler = PoolSampler()
_sampling_in: int | None = None
_sampler_lock = threading.Lock()


def start_sampling() -> None:
    """Sample this process's pool from now on (once per process). Its bound is known
    before the pool is made (on the first query)."""
    global _sampling_in  # noqa: PLW0603 - one sampler per process, restarted in a forked child
    with _sampler_lock:
        if _sampling_in == os.getpid():
            return
        _sampling_in = os.getpid()
    pool_options = settings.DATABASES["default"].get("OPTIONS", {}).get("pool") or {}
    metrics.DB_POOL_MAX.set(pool_options.get("max_size", 0) if isinstance(pool_options, dict) else 0)
    threading.Thread(target=_sample_forever, name="metrics-pool-sampler", daemon=True).start()


def sample_now() -> None:
    """The pool as it is now, for a scrape this process answers (its own gauges fresh)."""
    if _sampling_in == os.getpid():
        _sampler.sample()


def _sample_forever() -> None:
    while True:
        try:
            _sampler.sample()
        except Exception:  # a sample is worth less than the thread that takes the next one
            logger.warning("Metrics: the database pool could not be sampled", exc_info=True)
        time.sleep(settings.METRICS_SAMPLE_SECONDS)


# --- Read at scrape time ------------------------------------------------------------------

_clients: dict[str, redis.Redis] = {}


def _redis(url: str) -> redis.Redis:
    """One client (and connection pool) per URL and process, with the scrape's timeouts."""
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = redis.Redis.from_url(
            url, socket_timeout=CHECK_TIMEOUT_SECONDS, socket_connect_timeout=CHECK_TIMEOUT_SECONDS
        )
    return client


def database_answers() -> bool:
    """PostgreSQL accepts a new connection and answers a query. Not through the pool: a
    pool that is all in use is a shortage (its own metrics), not a database down."""
    params = settings.DATABASES["default"]
    try:
        with psycopg.connect(
            dbname=params["NAME"], user=params.get("USER") or None, password=params.get("PASSWORD") or None,
            host=params.get("HOST") or None, port=params.get("PORT") or None, connect_timeout=CHECK_TIMEOUT_SECONDS,
            application_name="aistatus-metrics",
        ) as connection:
            connection.execute("SELECT 1")
        return True
    except psycopg.Error as error:
        logger.warning("Metrics: the database does not answer: %s", error)
        return False


def _gauge(name: str, documentation: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels)


class ScrapeTimeCollector:
    """The readings of one scrape: dependencies up, each Redis role's memory, each
    queue's depth, oldest job, workers and failed jobs."""

    def collect(self) -> Iterator[Metric]:
        up = _gauge(
            "aistatus_dependency_up",
            "1 if the dependency answered this scrape (database: PostgreSQL; redis: the queue's and channel layer's "
            "Redis, REDIS_URL; cache: CACHE_REDIS_URL), else 0.",
            ["dependency"],
        )
        used = _gauge(
            "aistatus_redis_used_memory_bytes", "Memory the Redis of a role uses (INFO memory used_memory).", ["role"]
        )
        limit = _gauge(
            "aistatus_redis_maxmemory_bytes",
            "The Redis of a role's maxmemory (0: no limit; past it a cache evicts, the queue refuses writes).",
            ["role"],
        )
        up.add_metric(["database"], 1.0 if database_answers() else 0.0)
        for role, dependency, url in (("queue", "redis", settings.REDIS_URL), ("cache", "cache", settings.CACHE_REDIS_URL)):
            try:
                memory = _redis(url).info("memory")
            except redis.RedisError as error:
                logger.warning("Metrics: the %s Redis does not answer: %s", role, error)
                up.add_metric([dependency], 0.0)
                continue
            up.add_metric([dependency], 1.0)
            used.add_metric([role], float(memory.get("used_memory", 0)))
            limit.add_metric([role], float(memory.get("maxmemory", 0)))
        yield up
        yield used
        yield limit
        yield from self.queues()

    def queues(self) -> Iterator[Metric]:
        depth = _gauge("aistatus_queue_jobs", "Jobs waiting in an RQ queue.", ["queue"])
        oldest = _gauge(
            "aistatus_queue_oldest_job_age_seconds", "How long the queue's first job has waited (0: none waits).", ["queue"]
        )
        workers = _gauge("aistatus_queue_workers", "RQ workers listening to the queue.", ["queue"])
        failed = _gauge("aistatus_queue_failed_jobs", "Jobs in the queue's failed registry (kept for inspection).", ["queue"])
        for name in settings.RQ_QUEUES:
            try:
                queue = django_rq.get_queue(name)
                readings = (float(queue.count), oldest_job_age(queue), float(Worker.count(queue=queue)),
                            float(queue.failed_job_registry.count))
            except redis.RedisError as error:  # its Redis away: aistatus_dependency_up says so
                logger.warning("Metrics: the queue %s could not be read: %s", name, error)
                continue
            for family, reading in zip((depth, oldest, workers, failed), readings, strict=True):
                family.add_metric([name], reading)
        yield from (depth, oldest, workers, failed)


def oldest_job_age(queue: Queue) -> float:
    """Seconds the queue's first job has waited; 0 if none waits."""
    for job_id in queue.get_job_ids(0, 1):
        try:
            job = Job.fetch(job_id, connection=queue.connection)
        except NoSuchJobError:  # taken and finished meanwhile: the next scrape sees the next one
            return 0.0
        if job.enqueued_at is not None:
            enqueued = job.enqueued_at if job.enqueued_at.tzinfo else job.enqueued_at.replace(tzinfo=UTC)
            return max(0.0, (datetime.now(UTC) - enqueued).total_seconds())
    return 0.0
