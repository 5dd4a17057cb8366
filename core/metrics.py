"""Prometheus metrics, counted by every process of the stack and summed at GET /metrics.

The stack is several processes (daphne, the RQ worker and the work horse it forks for
each job, the cron), so the counts use prometheus_client's multiprocess mode: with
PROMETHEUS_MULTIPROC_DIR set (scripts/run_stack.sh sets it, the tests set their own)
each process writes its samples to files of its own in that directory, and the scrape
sums the files. Without it a process counts in memory and /metrics shows that process.

The places that count import this module and call one function or metric per place;
core imports no app, so labels are plain strings the callers give.

A work horse lives for one job, so its files are left behind by every job. At each
scrape, the files of processes that are gone are folded into one archive per type
(`counter_archive.db`, `histogram_archive.db`) and removed, so that the directory
(and the scrape's work) stays the size of the live processes; a gone process's open
streams gauge is simply dropped (its streams closed with it). The pids are this
host's: every process of the stack shares the directory on one machine.
"""

import fcntl
import glob
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector

from core.errors import problem_response
from core.health import holds_metrics_token

# --- The metrics -------------------------------------------------------------------

HTTP_REQUEST_SECONDS = Histogram(
    "aistatus_http_request_duration_seconds",
    "Time to answer a request (for a stream: until its response starts), by route name, method and status class.",
    ["route", "method", "status_class"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
POLLS = Counter(
    "aistatus_polls",
    "Poll answers (responses carrying X-Poll-Interval), by route name and status (200, 304...).",
    ["route", "status"],
)
CACHE_LOOKUPS = Counter(
    "aistatus_cache_lookups",
    "Cache reads by key family (the key's words, ids left out) and result (hit, miss; an unreachable cache is a miss).",
    ["cache", "result"],
)
EVENTS_PUBLISHED = Counter(
    "aistatus_events_published",
    "Events committed by publish() and sent to their stream's group, by stream kind (channel, user) and event type.",
    ["stream", "type"],
)
EVENTS_DELIVERED = Counter(
    "aistatus_events_delivered", "Events sent to a client, by transport (sse, ws).", ["transport"]
)
STREAM_REPLAYS = Counter(
    "aistatus_stream_replays",
    "Streams resumed from a client's event id (SSE Last-Event-ID, WebSocket since), by transport.",
    ["transport"],
)
STREAM_RESYNCS = Counter(
    "aistatus_stream_resyncs", "Clients told to resync (too far behind to replay), by transport.", ["transport"]
)
OPEN_STREAMS = Gauge(
    "aistatus_open_streams",
    "Stream connections open now, by transport: each process counts its own, the scrape sums the live ones.",
    ["transport"],
    multiprocess_mode="livesum",
)
STAGE_SECONDS = Histogram(
    "aistatus_job_stage_duration_seconds",
    "Duration of one stage of a job (job content: the pipeline's stages; job ai_job: the render, by kind), "
    "by outcome (ok, failed, stopped: cancelled or moved by someone else).",
    ["job", "stage", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0),
)
STAGE_FAILURES = Counter(
    "aistatus_job_stage_failures", "Stages of a job that ended in an error, by job and stage.", ["job", "stage"]
)
STREAM_ENDINGS = Counter(
    "aistatus_stream_endings",
    "Stream connections that ended, by transport and reason (STREAM_END_REASONS): the real-time success rate is "
    "1 - the share ended by error.",
    ["transport", "reason"],
)
DELIVERY_DROPS = Counter(
    "aistatus_delivery_drops",
    "Events that missed their fast path, by reason: wakeup_not_sent (the channel layer refused the wake-up after "
    "commit), wakeup_missed (a hub found the event in the table, its wake-up never came), table_unreadable (a "
    "stream could not read the table to fill a gap; it tries again at its next heartbeat).",
    ["reason"],
)
EVENT_WAKEUP_LAG = Histogram(
    "aistatus_event_wakeup_lag_seconds",
    "From an event's commit to its wake-up reaching the stream hub of a process that serves its stream: the "
    "outbox's lag (the table is the outbox, the channel layer its relay).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
SWEEP_RUNS = Counter(
    "aistatus_sweep_runs",
    "Runs the lifecycle sweep handed on, by job and action: requeued (its enqueue was lost), retried (its worker "
    "stopped responding; costs an attempt), failed (no attempt left).",
    ["job", "action"],
)
# Summed over the hosts, a job's runs a period is 1 (core.periodic: once per cluster).
PERIODIC_RUNS = Counter(
    "aistatus_periodic_runs",
    "Runs of the periodic jobs (config/schedule.py), by job (its dotted path) and outcome: ran, failed (raised), "
    "overlapping (skipped: the job's previous run still held it).",
    ["job", "outcome"],
)

# The database pool of each process (psycopg's, DB_POOL_MAX_SIZE), sampled every
# METRICS_SAMPLE_SECONDS by the process itself (core.metrics_sources): a gauge per live
# process (its `pid` label), as the pool is per process; the counters are summed.
DB_POOL_CONNECTIONS = Gauge(
    "aistatus_db_pool_connections",
    "Connections of this process's pool, by state (in_use, idle), per process (pid).",
    ["state"],
    multiprocess_mode="liveall",
)
DB_POOL_MAX = Gauge(
    "aistatus_db_pool_max_connections", "The pool's bound (DB_POOL_MAX_SIZE), per process (pid).", multiprocess_mode="liveall"
)
DB_POOL_WAITING = Gauge(
    "aistatus_db_pool_waiting", "Callers waiting for a connection of the pool now, per process (pid).", multiprocess_mode="liveall"
)
DB_POOL_WAITS = Counter("aistatus_db_pool_waits", "Connection requests that found no free connection and waited.")
DB_POOL_WAIT_SECONDS = Counter(
    "aistatus_db_pool_wait_seconds",
    "Time callers spent waiting for a connection (counted as each wait ends): its rate is the average number of "
    "callers waiting.",
)
DB_POOL_TIMEOUTS = Counter(
    "aistatus_db_pool_timeouts",
    "Connection requests refused: DB_POOL_TIMEOUT passed without a free connection (each one a 503).",
)

# --- The label values known at start --------------------------------------------------
#
# A labelled series exists once it is first counted; until then a rate of it is "no
# data", not 0. Every combination known here is created at 0 in each process that
# serves /metrics (initialise_known_series), before its first scrape. Apps tell what
# they count (their event types, their jobs' stages) in AppConfig.ready(), as core
# knows no app.

TRANSPORTS = ("sse", "ws")
STREAM_END_REASONS: dict[str, tuple[str, ...]] = {
    # lifetime: REALTIME_MAX_CONNECTION_SECONDS passed (the client reconnects);
    # revoked: its user lost access; credential_revoked / credential_expired: the token
    # or session it opened with was revoked or has expired; resync: too far behind
    # (SSE ends, the client refetches); error: an unexpected error ended it;
    # client_gone: the client closed it; shutdown: the connection ended while its
    # process was draining (core.health.draining: told to stop).
    "sse": (
        "lifetime", "revoked", "credential_revoked", "credential_expired", "resync", "error", "client_gone", "shutdown",
    ),
    # WebSocket only: forbidden: a subscribe refused with a close; too_many_messages:
    # over REALTIME_WS_MAX_MESSAGES_PER_SECOND; message_too_large: a message over
    # REALTIME_WS_MAX_MESSAGE_BYTES.
    "ws": (
        "lifetime", "revoked", "forbidden", "credential_revoked", "credential_expired", "error", "too_many_messages",
        "message_too_large", "client_gone", "shutdown",
    ),
}
DELIVERY_DROP_REASONS = ("wakeup_not_sent", "wakeup_missed", "table_unreadable")
SWEEP_ACTIONS = ("requeued", "retried", "failed")
STAGE_OUTCOMES = ("ok", "failed", "stopped")
STREAM_KINDS = ("channel", "user")
PERIODIC_OUTCOMES = ("ran", "failed", "overlapping")

_event_types: set[tuple[str, str]] = set()
_job_stages: set[tuple[str, str]] = set()
_jobs: set[str] = set()


def register_event_type(stream_kind: str, type_: str) -> None:
    """An event type published on streams of `stream_kind` (channel, user)."""
    _event_types.add((stream_kind, type_))


def register_job_stages(job: str, stages: Iterable[str]) -> None:
    """A job (its label: content, ai_job) and the stages stage_timer times for it; its
    sweep counts are known too."""
    _jobs.add(job)
    _job_stages.update((job, str(stage)) for stage in stages)


def initialise_known_series() -> None:
    """Create every known label combination at 0 in this process (idempotent)."""
    for transport in TRANSPORTS:
        EVENTS_DELIVERED.labels(transport)
        STREAM_REPLAYS.labels(transport)
        STREAM_RESYNCS.labels(transport)
        OPEN_STREAMS.labels(transport)
        for reason in STREAM_END_REASONS[transport]:
            STREAM_ENDINGS.labels(transport, reason)
    for reason in DELIVERY_DROP_REASONS:
        DELIVERY_DROPS.labels(reason)
    for stream_kind, type_ in _event_types:
        EVENTS_PUBLISHED.labels(stream_kind, type_)
    for job, stage in _job_stages:
        STAGE_FAILURES.labels(job, stage)
        for outcome in STAGE_OUTCOMES:
            STAGE_SECONDS.labels(job, stage, outcome)
    for job in _jobs:
        for action in SWEEP_ACTIONS:
            SWEEP_RUNS.labels(job, action)
    for state in ("in_use", "idle"):
        DB_POOL_CONNECTIONS.labels(state)
    # The schedule (settings.PERIODIC_JOBS) is read here, not registered by an app: it
    # is assembled in config/, where every app may be imported. Imported late, as
    # core.periodic counts into this module.
    from core.periodic import periodic_job_names

    for name in periodic_job_names():
        for outcome in PERIODIC_OUTCOMES:
            PERIODIC_RUNS.labels(name, outcome)

# --- What the counting places call ----------------------------------------------------

_WORD = re.compile(r"[a-z][a-z_-]*")


def cache_family(key: object) -> str:
    """A bounded label for a cache key: its words without the ids (`channel:<id>:status:<head>`
    is `channel:status`), `throttle` for DRF's throttle keys."""
    text = str(key)
    if text.startswith("throttle_"):
        return "throttle"
    return ":".join(part for part in text.split(":") if _WORD.fullmatch(part))[:60] or "other"


def cache_lookup(key: object, *, hit: bool) -> None:
    CACHE_LOOKUPS.labels(cache_family(key), "hit" if hit else "miss").inc()


def event_published(stream: str, type_: str) -> None:
    EVENTS_PUBLISHED.labels(stream.split(":", 1)[0], type_).inc()


def event_delivered(transport: str) -> None:
    EVENTS_DELIVERED.labels(transport).inc()


def stream_opened(transport: str) -> None:
    OPEN_STREAMS.labels(transport).inc()


def stream_closed(transport: str) -> None:
    OPEN_STREAMS.labels(transport).dec()


def replay_requested(transport: str, since: int | None) -> None:
    """Counts a stream that resumes from a client's id (`since` not None)."""
    if since is not None:
        STREAM_REPLAYS.labels(transport).inc()


def resynced(transport: str) -> None:
    STREAM_RESYNCS.labels(transport).inc()


def stream_ended(transport: str, reason: str) -> None:
    """One stream connection of `transport` ended for `reason` (STREAM_END_REASONS)."""
    STREAM_ENDINGS.labels(transport, reason if reason in STREAM_END_REASONS[transport] else "error").inc()


def delivery_dropped(reason: str, count: int = 1) -> None:
    if count:
        DELIVERY_DROPS.labels(reason).inc(count)


def wakeup_received(committed_at: object) -> None:
    """A hub received an event's wake-up, sent when it committed (time.time())."""
    if isinstance(committed_at, int | float):
        EVENT_WAKEUP_LAG.observe(max(0.0, time.time() - committed_at))


def swept(job: str, action: str, count: int) -> None:
    if count:
        SWEEP_RUNS.labels(job, action).inc(count)


@contextmanager
def stage_timer(job: str, stage: str, *, stopped: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Time one stage of a job. Any exception but `stopped` is a failure (counted, and
    raised on to the caller, which decides what the job does next)."""
    started = time.perf_counter()
    outcome = "failed"
    try:
        yield
        outcome = "ok"
    except stopped:
        outcome = "stopped"
        raise
    finally:
        STAGE_SECONDS.labels(job, str(stage), outcome).observe(time.perf_counter() - started)
        if outcome == "failed":
            STAGE_FAILURES.labels(job, str(stage)).inc()


# --- Requests ------------------------------------------------------------------------

_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


class RequestMetricsMiddleware:
    """Outermost: the latency of every request by route name, method and status class,
    and each poll answer (a response that carries X-Poll-Interval, core.polling)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]) -> None:
        from core import metrics_sources  # it reads the metrics defined here

        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
        # Built once per serving process, its apps ready: every known series exists
        # before the first scrape, and the process's pool is sampled from now on.
        initialise_known_series()
        metrics_sources.start_sampling()

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self._acall(request)
        started = time.perf_counter()
        # Not async: Django gave a sync get_response (__init__), which returns the response.
        response = cast(HttpResponse, self.get_response(request))
        self._count(request, response, started)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        # Async: Django gave a coroutine function (__init__).
        response = await cast(Awaitable[HttpResponse], self.get_response(request))
        self._count(request, response, started)
        return response

    @staticmethod
    def _count(request: HttpRequest, response: HttpResponse, started: float) -> None:
        match = getattr(request, "resolver_match", None)
        route = match.view_name if match is not None else "unmatched"
        method = request.method if request.method in _METHODS else "other"
        HTTP_REQUEST_SECONDS.labels(route, method, f"{response.status_code // 100}xx").observe(time.perf_counter() - started)
        if response.has_header("X-Poll-Interval"):
            POLLS.labels(route, str(response.status_code)).inc()


# --- Exposition ----------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fold_dead_processes(path: str) -> None:
    """Move the counts of processes that are gone into the archive files, and drop
    their live gauges. The caller holds the directory's lock."""
    for file in glob.glob(os.path.join(path, "*.db")):
        parts = os.path.basename(file)[: -len(".db")].split("_")
        if not parts[-1].isdigit() or _alive(int(parts[-1])):
            continue
        kind = parts[0]
        if kind == "gauge":
            if parts[1].startswith("live"):
                os.remove(file)
            continue
        archive = MmapedDict(os.path.join(path, f"{kind}_archive.db"))
        try:
            for key, value, _timestamp, _position in MmapedDict.read_all_values_from_file(file):
                current, _ = archive.read_value(key)
                archive.write_value(key, current + value, 0.0)
        finally:
            archive.close()
        os.remove(file)


@contextmanager
def _locked(path: str) -> Iterator[None]:
    """One scrape at a time: a scrape never reads a file half folded into the archive."""
    with open(os.path.join(path, "scrape.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def exposition() -> bytes:
    """Every process's metrics in Prometheus' text format, and what is read at scrape
    time (core.metrics_sources: dependencies, Redis memory, queues)."""
    from core.metrics_sources import ScrapeTimeCollector, sample_now

    initialise_known_series()
    sample_now()
    read_now = CollectorRegistry()
    read_now.register(ScrapeTimeCollector())
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return generate_latest(REGISTRY) + generate_latest(read_now)
    with _locked(path):
        fold_dead_processes(path)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=path)
        counted = generate_latest(registry)
    return counted + generate_latest(read_now)


def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics, for a scraper holding METRICS_TOKEN as a bearer token. Without a
    configured token the endpoint does not exist (404): nothing leaks by default."""
    token = settings.METRICS_TOKEN
    if not token:
        return problem_response(404, "Not found.", code="not_found")
    if not holds_metrics_token(request.headers.get("Authorization", "")):
        response = problem_response(401, "Send the metrics token as 'Authorization: Bearer <token>'.", code="not_authenticated")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if request.method not in ("GET", "HEAD"):
        return problem_response(405, "Only GET is allowed.", code="method_not_allowed")
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
