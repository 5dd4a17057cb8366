"""Once per cluster: every host runs a cron (scripts/run_stack.sh), and each periodic
job still runs once per period (core.periodic). Three real `manage.py run_cron`
processes share the test Redis with a real RQ worker, the flush every two seconds and
the sweeps every three; two of the crons, the latest claim's winner among them, are
SIGKILLed halfway. A run that outlasts its interval does not overlap itself, and the
jobs stay right if two runs meet anyway (the sweep is fenced by its run ids; the
flush's race is tests/test_view_counts.py's)."""

import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import django_rq
import pytest
from django.db import connection
from django.utils import timezone
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from rq.job import Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry

from contents.lifecycle import CONTENT
from contents.models import Content
from core import lifecycle, periodic
from core.periodic import (
    OncePerClusterJob,
    PeriodicJob,
    build_cron,
    job_id_of,
    period_key,
    period_of,
    run_periodic,
    running_key,
)
from tests.factories import make_content
from tests.helpers import kill_tree, wait_for
from tests.live import ROOT, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)

FLUSH = "videos.tasks.flush_view_counts"
SWEEPS = ("contents.tasks.sweep_stalled_contents", "aijobs.tasks.sweep_stalled_jobs")
SHORT = {"VIEW_FLUSH_SECONDS": "2", "CONTENT_SWEEP_INTERVAL": "3"}
INTERVALS = {FLUSH: 2, **dict.fromkeys(SWEEPS, 3), "moderation.services.purge_deleted_video_files": 600,
             "realtime.tasks.prune_old_events": 3600, "core.tasks.prune_expired_idempotency_records": 3600}


def start(log: Path, *command: str, **env: str) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "manage.py", *command], cwd=ROOT, env=subprocess_env(**env),
            start_new_session=True, stdout=out, stderr=subprocess.STDOUT,
        )


def runs_per_period() -> dict[str, Counter[int]]:
    """Each job's finished runs, by the period each ran for (a run that skipped is not one).
    A job enqueued as itself (RQ's plain cron) counts for the period it was enqueued in."""
    queue = django_rq.get_queue("default")
    runs: dict[str, Counter[int]] = {name: Counter() for name in INTERVALS}
    for job in Job.fetch_many(FinishedJobRegistry(queue=queue).get_job_ids(), connection=queue.connection):
        if job is None:
            continue
        if job.func_name == "core.periodic.run_periodic":
            name, period = job.args
            outcome = job.return_value()
            if outcome and outcome["ran"]:
                runs[name][period] += 1
        elif job.func_name in INTERVALS and job.enqueued_at is not None:
            runs[job.func_name][period_of(job.enqueued_at.timestamp(), INTERVALS[job.func_name])] += 1
    return runs


def counted_runs(name: str, outcome: str) -> float:
    """aistatus_periodic_runs as /metrics sums it over the processes."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry.get_sample_value("aistatus_periodic_runs_total", {"job": name, "outcome": outcome}) or 0.0


def claimant_pid(name: str) -> int | None:
    """The pid of the cron that claimed the job's latest period (its name ends with it);
    None if none did (crons that claim nothing, as RQ's plain one)."""
    redis = django_rq.get_connection("default")
    period = period_of(time.time(), INTERVALS[name])
    for k in (period, period - 1):
        claimant = redis.get(period_key(name, k))
        if claimant:
            return int((claimant.decode() if isinstance(claimant, bytes) else claimant).rsplit(":", 1)[1])
    return None


def test_three_crons_run_each_job_once_per_period_and_the_survivor_carries_on():
    log = Path(tempfile.mkstemp(prefix="crons-", suffix=".log")[1])
    flushes_counted_before = counted_runs(FLUSH, "ran")
    worker = start(log, "rqworker", "default", "--worker-class", "core.worker.DjangoWorker")
    crons = {p.pid: p for p in (start(log, "run_cron", **SHORT, PYTHONUNBUFFERED="1") for _ in range(3))}
    try:
        # Each says what it runs once it has its schedule, just before its first round.
        wait_for(lambda: log.read_text().count("stalled contents swept every") == 3, timeout=30, what="three crons to start")
        started = time.time()
        # Until halfway through a second (the periods start on whole seconds): the kill lands
        # while the crons sleep, not in the instant between a claim and its enqueue (which
        # would lose that period, by design).
        time.sleep(8 + (0.5 - time.time()) % 1)

        # Whichever cron won the latest flush period dies, with another, without a word.
        winner = claimant_pid(FLUSH) or next(iter(crons))
        victims = [winner, next(pid for pid in crons if pid != winner)]
        for pid in victims:
            kill_tree(pid)
            crons.pop(pid).wait(10)
        killed = time.time()
        time.sleep(6)

        (survivor,) = crons.values()
        stopped = time.time()
        survivor.send_signal(signal.SIGTERM)
        survivor.wait(10)
        queue = django_rq.get_queue("default")
        wait_for(lambda: queue.count == 0 and StartedJobRegistry(queue=queue).count == 0, timeout=30,
                 what="the worker to run what the crons enqueued")
    except BaseException:
        print(log.read_text()[-6000:])
        raise
    finally:
        for process in [*crons.values(), worker]:
            kill_tree(process.pid)
            process.wait(10)
    log.unlink()

    runs = runs_per_period()
    more_than_once = {name: {p: n for p, n in counts.items() if n > 1} for name, counts in runs.items()}
    assert {name: periods for name, periods in more_than_once.items() if periods} == {}, "ran more than once in a period"
    for name, counts in runs.items():
        first, last = min(counts), max(counts)
        assert set(counts) == set(range(first, last + 1)), f"{name} missed a period: {sorted(counts)}"
        # From the first cron's start to the survivor's stop, and past the kill without a gap.
        assert first <= period_of(started, INTERVALS[name]), name
        assert last >= period_of(stopped, INTERVALS[name]) - 1, name
    assert max(runs[FLUSH]) - period_of(killed, 2) >= 2, "the survivor went on flushing after the kill"
    assert len(runs[FLUSH]) >= 6 and all(len(runs[s]) >= 4 for s in SWEEPS), runs
    assert FailedJobRegistry(queue=django_rq.get_queue("default")).count == 0
    # What an operator sees: summed over the processes, a run a period.
    assert counted_runs(FLUSH, "ran") - flushes_counted_before == sum(runs[FLUSH].values())
    print(f"\n3 crons, then 1 from {killed - started:.1f} s to {stopped - started:.1f} s: runs a period "
          + ", ".join(f"{name.rsplit('.', 1)[1]} {set(counts.values())} over {len(counts)}" for name, counts in runs.items()))


def slow_job() -> str:
    time.sleep(2.5)
    return "done"


def test_a_run_longer_than_its_interval_does_not_overlap_itself(monkeypatch):
    # A lease of a second, renewed while the 2.5 s run lasts: the run outlives it twice over.
    monkeypatch.setattr(periodic, "RUNNING_LEASE_SECONDS", 1)
    name = f"{__name__}.slow_job"
    outcomes: list[dict] = []
    first = threading.Thread(target=lambda: outcomes.append(run_periodic(name, 1)))
    first.start()
    time.sleep(0.2)
    outcomes.append(run_periodic(name, 2))  # the next period's run, on another worker, while the first runs
    time.sleep(1.6)
    outcomes.append(run_periodic(name, 3))  # and the next, once an unrenewed lease would have expired
    first.join()
    assert sorted(outcomes, key=lambda o: o["period"]) == [
        {"period": 1, "ran": True, "result": "done"}, {"period": 2, "ran": False}, {"period": 3, "ran": False},
    ]
    # Released as the run ended: the job's next period runs.
    assert not django_rq.get_connection("default").exists(running_key(name))
    assert run_periodic(name, 4) == {"period": 4, "ran": True, "result": "done"}


def quick_job() -> str:
    return "quick"


def one_quick_job() -> list[PeriodicJob]:
    return [PeriodicJob(quick_job, interval=10)]


def test_crons_that_wake_apart_or_restart_mid_period_enqueue_each_period_once(settings):
    settings.PERIODIC_JOBS = f"{__name__}.one_quick_job"
    redis = django_rq.get_connection("default")
    crons = [build_cron() for _ in range(3)]
    jobs = [job for cron in crons for job in cron.get_jobs() if isinstance(job, OncePerClusterJob)]
    assert len(jobs) == 3
    name = f"{__name__}.quick_job"
    start = (period_of(time.time(), 10) + 1) * 10
    enqueued = []
    for k in range(5):
        at = start + 10 * k
        enqueued.append(jobs[0].enqueue_once(redis, claimant="first", at=at + 0.01))
        # Its clock 0.4 s behind the first's: it wakes at the same period start, later.
        enqueued.append(jobs[1].enqueue_once(redis, claimant="behind", at=at + 0.01))
        # The run is done and RQ has dropped its record (result_ttl: 500 s by default, an
        # hourly job's period is 3600), and a cron starts mid-period (as after a crash):
        # it tries that period at once.
        Job.fetch(job_id_of(name, period_of(at, 10)), connection=redis).delete()
        enqueued.append(jobs[2].enqueue_once(redis, claimant="restarted", at=at + 5))
    assert enqueued == [True, False, False] * 5
    # Kept a minute past its period: a clock up to a minute behind still finds it claimed.
    assert redis.ttl(period_key(name, period_of(start, 10))) > 10 + 50
    # Every cron's next wake-up is the next period's start, whenever it ran.
    jobs[2].set_enqueue_time(datetime.fromtimestamp(start + 3.2, UTC))
    assert jobs[2].next_enqueue_time == datetime.fromtimestamp(start + 10, UTC)


def test_two_sweeps_at_once_retry_each_stalled_content_once(settings, monkeypatch):
    contents = [make_content() for _ in range(5)]
    stalled_at = timezone.now() - timedelta(seconds=settings.CONTENT_STALL_SECONDS + 5)
    Content.objects.filter(id__in=[c.id for c in contents]).update(
        status="generating", processing_status="summarizing", heartbeat_at=stalled_at, job_id="gone"
    )
    queue = django_rq.get_queue("default")
    queued_before = queue.count
    # Both sweeps have read the same stalled rows before either hands one on.
    both_read = threading.Barrier(2)
    seen = threading.local()
    job_is_waiting = lifecycle.job_is_waiting

    def after_both_read(run_id: str) -> bool:
        if not getattr(seen, "waited", False):
            seen.waited = True
            both_read.wait(10)
        return job_is_waiting(run_id)

    monkeypatch.setattr(lifecycle, "job_is_waiting", after_both_read)
    results: list[dict[str, int]] = []

    def sweep() -> None:
        try:
            results.append(lifecycle.sweep_stalled(CONTENT))
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(r["retried"] for r in results) == 5, results
    rows = Content.objects.filter(id__in=[c.id for c in contents])
    assert sorted(r.attempts for r in rows) == [2] * 5  # one attempt each, not two
    assert queue.count - queued_before == 5  # one new run each
    assert set(queue.get_job_ids()) >= {r.job_id for r in rows}
