"""What the performance scenarios (poll_cost, freshness, fanout, batch, scaling,
capacity) share on top of the reconnect storm's helpers: one bench database, daphnes
in the production server mode, the load clients' process (bench.clients), CPU and
memory read from /proc, and tables.

The servers, the database and the committer come from bench.reconnect_storm; the
clients run in processes of their own (bench.clients, or the storm's ClientProcess),
never in the orchestrator or the servers."""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.reconnect_storm import Daphne, admin_params, free_port, percentile, rss_kib  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "aistatus_bench_perf"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# The production server mode: DEBUG off (no query log, no debug pages), the throttles
# out of the way (the clients are one address), production realtime timing (Daphne).
PRODUCTION_ENV = {"DEBUG": "false", "THROTTLE_ANON": "100000000/min", "THROTTLE_USER": "100000000/min"}


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its threads), from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def backend_pids(database: str) -> list[int]:
    """PostgreSQL backends connected to `database` (the servers' pools)."""
    import psycopg

    with psycopg.connect(**admin_params(), autocommit=True) as conn:
        return [row[0] for row in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [database])]


# The server the benches start: what `make run` ships (scripts/run_stack.sh), one
# granian worker per server process; BENCH_WEB_SERVER=daphne for RUN_MODE=dev's.
WEB_SERVER = os.environ.get("BENCH_WEB_SERVER", "granian")


class Servers:
    """n server processes (one granian worker each, or daphnes) on the bench database in
    the production server mode, with their CPU (and their PostgreSQL backends' CPU)
    read from /proc."""

    def __init__(self, n: int, database_url: str, label: str, env: dict[str, str] | None = None,
                 server: str = WEB_SERVER) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix=f"bench-{label}-"))
        self.server = server
        self.daphnes = [Daphne(port=free_port(), database_url=database_url, log_path=self.workdir / f"{server}-{i}.log",
                               env={**PRODUCTION_ENV, **(env or {})}, server=server) for i in range(n)]
        self.database = database_url.rsplit("/", 1)[1]
        self._backend_cpu: dict[int, float] = {}

    @property
    def ports(self) -> list[int]:
        return [d.port for d in self.daphnes]

    @property
    def pids(self) -> list[int]:
        return [pid for d in self.daphnes for pid in d.pids()]

    def start(self) -> "Servers":
        for daphne in self.daphnes:
            daphne.spawn()
        for daphne in self.daphnes:
            daphne.wait_ready(60)
        return self

    def cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)

    def backend_cpu(self) -> float:
        """CPU of the database backends serving the bench database (kept per pid, so a
        backend that has exited still counts with its last reading)."""
        for pid in backend_pids(self.database):
            self._backend_cpu[pid] = max(self._backend_cpu.get(pid, 0.0), cpu_seconds(pid))
        return sum(self._backend_cpu.values())

    def rss_kib(self) -> int:
        return sum(rss_kib(pid) for pid in self.pids)

    def stop(self) -> None:
        for daphne in self.daphnes:
            daphne.stop()
        time.sleep(0.5)  # the pools' backends exit and publish their statistics

    def __enter__(self) -> "Servers":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class LoadClients:
    """A `python -m bench.clients CONFIG` process: it prints JSON lines (progress,
    then its final report) and ends when its work is done or its stdin closes."""

    def __init__(self, config: dict[str, Any], log_path: Path | None = None) -> None:
        log = (log_path or Path(tempfile.mkstemp(prefix="bench-clients-", suffix=".log")[1])).open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", "bench.clients", json.dumps(config)], cwd=ROOT,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
        # Both are pipes (stdin=PIPE, stdout=PIPE above).
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin, self.stdout = self.process.stdin, self.process.stdout
        self.lines: list[dict[str, Any]] = []
        self._new = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.stdout:
            with self._new:
                self.lines.append(json.loads(line))
                self._new.notify_all()
        with self._new:
            self.lines.append({"phase": "exit"})
            self._new.notify_all()

    def wait(self, phase: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._new:
            while True:
                for line in self.lines:
                    if line.get("phase") in (phase, "exit"):
                        if line["phase"] == "exit" and phase != "exit":
                            raise RuntimeError(f"the client process ended before {phase!r}; see its log")
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"the client process did not reach {phase!r} in {timeout:.0f} s")
                self._new.wait(left)

    def send(self, line: str = "") -> None:
        self.stdin.write(line + "\n")
        self.stdin.flush()

    def finish(self, timeout: float = 120) -> dict[str, Any]:
        """Close stdin (clients holding connections let go) and return the report."""
        with suppress(BrokenPipeError):
            self.stdin.close()
        report = self.wait("report", timeout)
        self.process.wait(30)
        return report

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def run_clients(config: dict[str, Any], timeout: float) -> dict[str, Any]:
    clients = LoadClients(config)
    try:
        return clients.wait("report", timeout)
    finally:
        clients.kill()


def print_table(headers: list[str], rows: list[list[Any]], indent: str = "  ") -> None:
    cells = [[str(h) for h in headers]] + [[c if isinstance(c, str) else fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print(indent + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=False))))
        if n == 0:
            print(indent + "  ".join("-" * w for w in widths))


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:
            return "n/a"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def ratio(value: float, base: float) -> str:
    if not base or value != value or base != base:
        return "n/a"
    return f"{value / base:.2f}x"


@contextmanager
def bench_db() -> Iterator[str]:
    from bench.reconnect_storm import bench_database

    with bench_database(DATABASE) as url:
        yield url


def user_with_token(label: str) -> tuple[Any, str]:
    from django.contrib.auth import get_user_model
    from knox.models import AuthToken

    user = get_user_model().objects.create(username=f"bench-{label}-{os.getpid()}-{time.time_ns()}")
    return user, AuthToken.objects.create(user=user)[1]


SUMMARY = ("An extractive summary of the linked page, as the AI pipeline writes it: the page's main points "
           "in a few sentences, long enough to fill a card in the channel view. ") * 4
QA_LIST = [{"question": f"Question {n} a reader of the page would ask about it?",
            "answer": "The answer the pipeline extracted from the page, a sentence or two long, quoted from it. " * 2}
           for n in range(5)]


def copy_contents(channel: Any, provider: Any, n: int, *, short: bool = False) -> None:
    """n contents in the channel with SQL COPY: 2% processing, 2% failed, the rest complete
    with a realistic ai_gen_metadata (~2 KB, as the seed's ~50 KB per 25-content list;
    `short`: ~0.3 KB, to insert 100,000 rows quickly)."""
    import uuid
    from datetime import timedelta

    from django.db import connection, transaction
    from django.utils import timezone

    from contents.totals import totals_recount

    columns = ("id", "url", "img_url", "video_url", "title", "description", "category", "ai_gen_metadata",
               "link_preview_metadata", "created_at", "updated_at", "channel_id", "provider_id", "attempts",
               "error_message", "estimated_completion", "finished_at", "heartbeat_at", "job_id", "processing_status",
               "progress", "source_text", "stage_started_at", "status", "version")
    metadata = json.dumps({"summary": SUMMARY[:200], "qa_list": QA_LIST[:1]} if short else {"summary": SUMMARY, "qa_list": QA_LIST})
    preview = json.dumps({"title": "A linked page", "description": "Its description.", "image_url": "https://example.com/i.png",
                          "site_name": "example.com"})
    now = timezone.now()
    with (
        transaction.atomic(),
        connection.cursor() as cursor,
        cursor.copy(f"COPY contents_content ({', '.join(columns)}) FROM STDIN") as copy,
    ):
        for i in range(n):
            created = now - timedelta(seconds=n - i)
            kind = i % 50
            state: tuple[str, str, int, str | None, datetime | None, datetime | None]
            if kind == 0:
                state = ("generating", "summarizing", 40, None, None, created)
            elif kind == 1:
                state = ("error", "failed", 0, None, created + timedelta(seconds=5), None)
            else:
                state = ("complete", "completed", 100, metadata, created + timedelta(seconds=5), None)
            status, processing, progress, meta, finished, stage = state
            copy.write_row((uuid.uuid4(), f"https://example.com/{i}", "", "", f"Content {i}", "A description.", "news",
                            meta, preview, created, finished or created, channel.id, provider.id, 1,
                            "The AI provider failed." if status == "error" else "", None, finished, None, "", processing,
                            progress, "", stage, status, 3))
    totals_recount(channel.id)  # COPY went behind the services, which keep the totals
