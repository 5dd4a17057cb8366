"""A reconnect storm: 1,000 subscribers of one channel (SSE and WebSocket, half each)
over two daphne processes that are restarted together while events keep being
committed. Every client must come back by itself (SSE with Last-Event-ID, WebSocket
with `since`) and replay what it missed from the outbox: nothing lost, nothing twice.

Reported: time from SIGTERM until every client holds the last committed id, lost and
duplicated events per client, and what the storm cost the database (pg_stat_database
deltas of the bench's own database; pg_stat_statements is not preloaded here).
Baseline: the same clients receiving a burst live before the restart.

The module has two halves. The orchestrator (`main`, run by `python -m bench`) owns
the database, the daphnes and the commits. The clients run in a subprocess of their
own (`python -m bench.reconnect_storm --clients CONFIG`, no Django), driven by JSON
lines on stdin and answering on stdout, so that they share no CPU time slice, event
loop or GIL with the servers. The soak benchmark reuses both halves."""

import asyncio
import contextlib
import itertools
import json
import os
import queue
import random
import resource
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.web_server import granian_command

if TYPE_CHECKING:
    from contents.models import Content

ROOT = Path(__file__).resolve().parent.parent
# Issue 20: 10,000 clients reconnecting after a deploy are current within 15 s.
SUBSCRIBERS = int(os.environ.get("BENCH_STORM_SUBSCRIBERS", "10000"))
STORM_GOAL_SECONDS = 15
# Subscribers per client process: one process of asyncio clients keeps up with this many.
PER_CLIENT_PROCESS = 1250


def quiet_http_logs() -> None:
    """httpx logs every request at INFO, which the project's root logger shows."""
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)


def raise_fd_limit() -> None:
    """Each subscriber is a socket on both sides; children inherit the raised limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the floor: a minimal Channels consumer on the same server -----------------------


_floor_app: Any = None


async def floor_application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """What a subscribe costs a server at the least (issue 20's floor): a Channels
    consumer that accepts the socket and answers a subscribe, with no ticket, no
    authentication, no hub, no database. Served by the same server as the project
    (`granian ... bench.reconnect_storm:floor_application`)."""
    global _floor_app  # noqa: PLW0603 - built once per server process, on its first connection
    if _floor_app is None:
        import django

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        django.setup(set_prefix=False)
        from channels.generic.websocket import AsyncWebsocketConsumer
        from channels.routing import ProtocolTypeRouter, URLRouter
        from django.urls import path

        class Floor(AsyncWebsocketConsumer):
            channel_layer_alias = ""  # no channel layer

            async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
                await self.send(text_data='{"type":"subscribed"}')

        async def healthy(scope: dict[str, Any], receive: Any, send: Any) -> None:
            # The bench waits for /healthz before it starts.
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        # django-stubs' path() takes views, not consumers (as config.asgi notes).
        routes = URLRouter([path("floor", Floor.as_asgi())])  # type: ignore[arg-type, list-item]  # see above
        _floor_app = ProtocolTypeRouter({"http": healthy, "websocket": routes})
    await _floor_app(scope, receive, send)


# Issue 20's "now" column (measured before this work, one granian worker, 2 shared cores).
NOW_SUBSCRIBES_PER_S = "119-296 (6.3 ms CPU each + 2.6 ms per ticket)"
NOW_FLOOR_SUBSCRIBES_PER_S = "1,235-2,430 (0.6-1.2 ms)"
SUBSCRIBE_COUNT = int(os.environ.get("BENCH_SUBSCRIBES", "3000"))


def subscribe_rate() -> dict[str, Any]:
    """Authenticated subscribes per second one granian worker takes (WebSocket with its
    ticket, SSE with a bearer token: each connects, subscribes and is held), with the
    worker's CPU per subscribe, beside the floor (floor_application) on the same server
    in the same run. Clients in a process of their own, 64 at a time."""
    from bench import harness

    rows = []
    with harness.bench_db() as database_url:
        _user, token, channel = bench_setup("subscribes")
        for kind in ("ws", "sse", "ws-floor"):
            servers = harness.Servers(1, database_url, f"subscribes-{kind}")
            if kind == "ws-floor":
                for daphne in servers.daphnes:
                    daphne.app = "bench.reconnect_storm:floor_application"
            servers.start()
            try:
                cpu_before = servers.cpu()
                clients = harness.LoadClients({"mode": "hold", "port": servers.ports[0], "kind": kind, "count": SUBSCRIBE_COUNT,
                                               "concurrency": 64, "connect_seconds": 30, "channel_id": str(channel.id),
                                               "token": token}, servers.workdir / "clients.log")
                try:
                    connected = clients.wait("connected", 120)
                    cpu = servers.cpu() - cpu_before
                finally:
                    clients.kill()
            finally:
                servers.stop()
            held = connected["held"]
            rows.append({"kind": kind, "held": held, "seconds": connected["seconds"],
                         "per_s": held / connected["seconds"] if connected["seconds"] else float("nan"),
                         "cpu_ms": cpu * 1000 / held if held else float("nan"), "errors": connected["errors"],
                         "p50_ms": connected["connect_p50_ms"], "p99_ms": connected["connect_p99_ms"]})
    floor = rows[-1]
    print(f"subscribes: one {harness.WEB_SERVER} worker, {SUBSCRIBE_COUNT} subscribes held 64 at a time "
          f"(issue 20's now: {NOW_SUBSCRIBES_PER_S} a second; its floor {NOW_FLOOR_SUBSCRIBES_PER_S})")
    names = {"ws": "WebSocket (ticket + subscribe)", "sse": "SSE (bearer)", "ws-floor": "floor: minimal Channels consumer"}
    harness.print_table(
        ["subscribe", "held", "seconds", "per second", "of floor", "worker CPU ms each", "p50 ms", "p99 ms", "errors"],
        [[names[r["kind"]], r["held"], r["seconds"], r["per_s"], harness.ratio(r["per_s"], floor["per_s"]), r["cpu_ms"],
          r["p50_ms"] or float("nan"), r["p99_ms"] or float("nan"), json.dumps(r["errors"]) if r["errors"] else ""]
         for r in rows])
    return {"rows": rows}


# --- client half (runs in its own process, imports no Django) --------------------


class Subscriber:
    """One SSE or WebSocket subscriber that reconnects on its own: at once (with a
    little jitter) after a stream it had ends, with a growing backoff while the
    server refuses or fails the attempt."""

    def __init__(self, index: int, kind: str, port: int, config: dict[str, Any], http: Any) -> None:
        self.index, self.kind, self.port = index, kind, port
        self.channel_id, self.token = config["channel_id"], config["token"]
        self.http = http
        self.last = 0  # the channel is new: every id from 1 on is for this client
        self.live = False
        self.events: list[tuple[int, Any, Any, float]] = []
        self.connects: list[float] = []
        self.failed_attempts = 0
        self.errors: Counter[str] = Counter()
        self.resyncs = 0
        self.server_errors: list[str] = []

    def on_event(self, seq: int, data: dict[str, Any]) -> None:
        if data.get("type") == "resync":
            self.resyncs += 1
            self.last = max(self.last, int(data.get("last_event_id", seq)))
            return
        self.events.append((seq, data.get("content_id"), data.get("version"), time.time()))
        self.last = max(self.last, seq)

    def became_live(self) -> None:
        self.live = True

    async def run(self) -> None:
        backoff = 0.1
        while True:
            self.live = False
            was_live = False
            try:
                if self.kind == "sse":
                    await self._sse()
                else:
                    await self._ws()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - every failure means: try again
                self.errors[type(error).__name__] += 1
            was_live = self.live
            self.live = False
            if was_live:
                backoff = 0.1
                await asyncio.sleep(random.uniform(0, 0.2))
            else:
                self.failed_attempts += 1
                await asyncio.sleep(random.uniform(backoff / 2, backoff))
                backoff = min(backoff * 2, 5.0)

    async def _sse(self) -> None:
        import httpx

        url = f"http://127.0.0.1:{self.port}/api/contents/{self.channel_id}/events"
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "text/event-stream", "Last-Event-ID": str(self.last)}
        # A stream silent for three production heartbeats is dead: try again.
        async with self.http.stream("GET", url, headers=headers, timeout=httpx.Timeout(10, read=30)) as response:
            if response.status_code != 200:
                raise httpx.HTTPStatusError(f"{response.status_code}", request=response.request, response=response)
            self.connects.append(time.time())
            seq, data = None, None
            async for line in response.aiter_lines():
                if line.startswith(": connected"):
                    self.became_live()
                elif line.startswith("id: "):
                    seq = int(line[4:])
                elif line.startswith("data: "):
                    data = line[6:]
                elif line == "" and seq is not None and data is not None:
                    self.on_event(seq, json.loads(data))
                    seq, data = None, None

    async def _ws(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.typing import Origin

        base = f"127.0.0.1:{self.port}"
        response = await self.http.post(
            f"http://{base}/v1/realtime/tickets", headers={"Authorization": f"Bearer {self.token}"}, timeout=10
        )
        if response.status_code != 201:
            raise RuntimeError(f"ticket {response.status_code}")
        ticket = response.json()["ticket"]
        url = f"ws://{base}/api/contents/{self.channel_id}/ws?ticket={ticket}"
        async with connect(url, origin=Origin(f"http://{base}"), open_timeout=20, max_queue=None) as ws:
            self.connects.append(time.time())
            await ws.send(json.dumps({"type": "subscribe", "channel_id": self.channel_id, "since": self.last}))
            async with asyncio.timeout(20) as subscribing:  # no answer to subscribe: try again
                async for raw in ws:
                    self._on_ws_message(json.loads(raw))
                    if self.live:
                        subscribing.reschedule(None)
                        break
            async for raw in ws:
                self._on_ws_message(json.loads(raw))

    def _on_ws_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "subscribed":
            self.became_live()
        elif kind == "resync":
            self.on_event(message.get("last_event_id", self.last), {"type": "resync", **message})
        elif kind == "error":
            self.server_errors.append(message.get("code", "?"))
        elif "id" in message:
            self.on_event(message["id"], message["data"])

    def report(self) -> dict[str, Any]:
        return {
            "index": self.index, "kind": self.kind, "port": self.port, "events": self.events,
            "connects": self.connects, "failed_attempts": self.failed_attempts, "errors": dict(self.errors),
            "resyncs": self.resyncs, "server_errors": self.server_errors, "live": self.live,
        }


def answer(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def run_clients(config: dict[str, Any]) -> None:
    import httpx

    raise_fd_limit()
    ports, count = config["ports"], config["count"]
    # One small client per subscriber: a single pool of a thousand connections makes
    # httpcore rescan them all on every request (quadratic), which the client process
    # would pay, not the servers. One TLS context for all (never used: plain HTTP).
    tls = ssl.create_default_context()
    https = [httpx.AsyncClient(verify=tls, timeout=10) for _ in range(count)]
    try:
        offset = config.get("offset", 0)
        subscribers = [
            # Alternate the kinds, and spread each kind over both servers.
            Subscriber(offset + i, config.get("kind") or ("sse" if i % 2 == 0 else "ws"), ports[(i // 2) % len(ports)],
                       config, https[i])
            for i in range(count)
        ]
        tasks = []
        for subscriber in subscribers:
            tasks.append(asyncio.create_task(subscriber.run()))
            await asyncio.sleep(config.get("ramp_seconds", 0.01))
        tasks.append(asyncio.create_task(log_progress(subscribers)))
        try:
            while True:
                line = await asyncio.to_thread(sys.stdin.readline)
                if not line:
                    return
                command = json.loads(line)
                deadline = time.monotonic() + command.get("timeout", 60)
                if command["cmd"] == "wait_live":
                    # Polled (ASYNC110): no one event fires when a sum over all subscribers changes.
                    while sum(s.live for s in subscribers) < count and time.monotonic() < deadline:  # noqa: ASYNC110 - a sum, polled
                        await asyncio.sleep(0.05)
                    answer({"live": sum(s.live for s in subscribers), "total": count, "t": time.time()})
                elif command["cmd"] == "wait_current":
                    target, need = command["last"], command.get("need", count)  # need: e.g. only those live
                    while sum(s.last >= target for s in subscribers) < need and time.monotonic() < deadline:  # noqa: ASYNC110 - a sum, polled
                        await asyncio.sleep(0.01)
                    answer({"current": sum(s.last >= target for s in subscribers), "total": count, "t": time.time()})
                elif command["cmd"] == "drop_offline":
                    # A bounded benchmark goes on with those connected: the others stop trying.
                    for subscriber, task in zip(subscribers, tasks[:len(subscribers)], strict=True):  # the last is log_progress's
                        if not subscriber.live:
                            task.cancel()
                    answer({"live": sum(s.live for s in subscribers), "total": count, "t": time.time()})
                elif command["cmd"] == "report":
                    answer({"subscribers": [s.report() for s in subscribers]})
                    return
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await asyncio.gather(*(http.aclose() for http in https), return_exceptions=True)


async def log_progress(subscribers: list[Subscriber]) -> None:
    """To the client log: how many are connected, and their position, every 5 s."""
    while True:
        await asyncio.sleep(5)
        lasts = [s.last for s in subscribers]
        print(f"{time.strftime('%H:%M:%S')} live {sum(s.live for s in subscribers)}/{len(subscribers)} "
              f"last id min {min(lasts)} max {max(lasts)} failed attempts {sum(s.failed_attempts for s in subscribers)}",
              file=sys.stderr, flush=True)


class ClientProcess:
    """The subscribers' process, seen from the orchestrator."""

    def __init__(self, *, ports: list[int], channel_id: str, token: str, count: int, log_path: Path,
                 ramp_seconds: float = 0.01, offset: int = 0, kind: str | None = None) -> None:
        # kind: every subscriber "sse" or "ws"; None alternates them.
        config = {"ports": ports, "channel_id": channel_id, "token": token, "count": count, "ramp_seconds": ramp_seconds,
                  "offset": offset, "kind": kind}
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.reconnect_storm", "--clients", json.dumps(config)],
                cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
            )
        # Both are pipes (stdin=PIPE, stdout=PIPE above).
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin, self.stdout = self.process.stdin, self.process.stdout
        self.answers: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.stdout:
            self.answers.put(json.loads(line))

    def ask(self, cmd: str, *, timeout: float = 60, **arguments: Any) -> dict[str, Any]:
        self.stdin.write(json.dumps({"cmd": cmd, **arguments, "timeout": timeout}) + "\n")
        self.stdin.flush()
        try:
            return self.answers.get(timeout=timeout + 60)
        except queue.Empty:
            raise RuntimeError(f"the client process did not answer {cmd}; see {self.log_path}") from None

    def rss_kib(self) -> int:
        return rss_kib(self.process.pid)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


class ClientGroup:
    """Subscribers over several client processes (PER_CLIENT_PROCESS each), asked as one."""

    def __init__(self, *, ports: list[int], channel_id: str, token: str, count: int, workdir: Path,
                 kind: str | None = None, per_process: int = PER_CLIENT_PROCESS) -> None:
        self.processes: list[ClientProcess] = []
        for start in range(0, count, per_process):
            n = min(per_process, count - start)
            self.processes.append(ClientProcess(ports=ports, channel_id=channel_id, token=token, count=n,
                                                log_path=workdir / f"clients-{len(self.processes)}.log", offset=start,
                                                ramp_seconds=0.004 if count > per_process else 0.01, kind=kind))

    def ask(self, cmd: str, *, timeout: float = 60, **arguments: Any) -> dict[str, Any]:
        answers: list[dict[str, Any]] = [{} for _ in self.processes]

        def one(i: int) -> None:
            answers[i] = self.processes[i].ask(cmd, timeout=timeout, **arguments)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(self.processes))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if cmd == "report":
            return {"subscribers": [s for answer in answers for s in answer["subscribers"]]}
        merged: dict[str, Any] = {"t": max(a["t"] for a in answers), "total": sum(a["total"] for a in answers)}
        for key in ("live", "current"):
            if key in answers[0]:
                merged[key] = sum(a[key] for a in answers)
        return merged

    def wait(self, timeout: float) -> None:
        for process in self.processes:
            process.process.wait(timeout)

    def close(self) -> None:
        for process in self.processes:
            process.close()


# --- orchestrator half (Django) ----------------------------------------------------


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


class Daphne:
    """One server process on a fixed port with production realtime settings, logging to
    a file: daphne, or with server="granian" one granian worker as scripts/run_stack.sh
    starts it (the production server mode), which is a parent and its worker process."""

    def __init__(self, *, port: int, database_url: str, log_path: Path, env: dict[str, str] | None = None,
                 server: str = "daphne") -> None:
        self.port, self.database_url, self.log_path, self.server = port, database_url, log_path, server
        self.env = env or {}  # extra environment (e.g. DEBUG=false, raised throttles)
        self.process: subprocess.Popen | None = None

    # The ASGI application it serves (the floor of a benchmark serves another).
    app = "config.asgi:application"

    def command(self) -> list[str]:
        app = self.app
        if self.server == "granian":
            # As scripts/run_stack.sh starts it (config.web_server: its per-connection bounds).
            command = granian_command(host="127.0.0.1", port=self.port, workers=1, extra=[
                "--no-access-log", "--backlog", "4096", "--backpressure", "20000"])
            return [*command[:-1], app]
        return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), app]

    def pids(self) -> list[int]:
        """The server's processes: granian's parent and its worker."""
        if self.process is None:
            return []
        found, parents = [self.process.pid], {self.process.pid}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) in parents:
                found.append(int(stat.parent.name))
        return found

    def spawn(self) -> None:
        env = {**os.environ, "DATABASE_URL": self.database_url, **self.env}
        # Production timing: the heartbeat (and WS catch-up sweep) at its default.
        env.pop("REALTIME_HEARTBEAT_SECONDS", None)
        with self.log_path.open("ab") as log:
            log.write(f"\n--- {self.server} start {time.strftime('%H:%M:%S')} ---\n".encode())
            log.flush()
            self.process = subprocess.Popen(self.command(), cwd=ROOT, env=env, stdout=log, stderr=log)

    def wait_ready(self, timeout: float = 30) -> None:
        """Until /healthz answers 200 (a first start, nobody else calling)."""
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"daphne on {self.port} did not start; see {self.log_path}")

    def wait_listening(self, timeout: float = 30) -> None:
        """Until the port accepts connections: under a storm an HTTP probe would queue
        behind the clients, and /healthz also checks the database they exhaust."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:  # never started, or exited
                break
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"daphne on {self.port} did not start listening; see {self.log_path}")

    def terminate(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def exited(self) -> bool:
        return self.process is None or self.process.poll() is not None

    def stop(self, timeout: float = 15) -> None:
        if self.process is None:
            return
        self.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_problems(self) -> list[str]:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [line for line in lines if any(word in line for word in ("Traceback", "ERROR", "Error", "Exception", "CRITICAL"))]


@contextmanager
def bench_database(name: str):
    """Point this process's default connection at the benchmark's own database
    (created and migrated if needed) and yield its URL for the daphnes."""
    import psycopg
    from django.contrib.contenttypes.models import ContentType
    from django.core.management import call_command
    from django.db import connections
    from psycopg import sql

    settings_dict = connections["default"].settings_dict
    original = settings_dict["NAME"]
    with psycopg.connect(**admin_params(), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    release_connections()
    settings_dict["NAME"] = name
    ContentType.objects.clear_cache()
    try:
        call_command("migrate", verbosity=0, interactive=False)
        user = settings_dict.get("USER") or "postgres"
        yield f"postgres://{user}@{settings_dict.get('HOST') or '127.0.0.1'}:{settings_dict.get('PORT') or 5432}/{name}"
    finally:
        release_connections()
        settings_dict["NAME"] = original
        ContentType.objects.clear_cache()


def release_connections() -> None:
    """Close this process's connection and its pool (settings.DB_POOL_MAX_SIZE): a pool is
    made once per alias with the database it was first opened on, so without this every
    benchmark after the first one in a process would read and write the first one's
    database while its servers use their own."""
    from django.db import connections

    connection = connections["default"]
    connection.close()
    if hasattr(connection, "close_pool"):
        connection.close_pool()


def admin_params() -> dict[str, Any]:
    from django.db import connections

    db = connections["default"].settings_dict
    return {"host": db.get("HOST") or None, "port": db.get("PORT") or None, "user": db.get("USER") or None,
            "password": db.get("PASSWORD") or None, "dbname": "postgres", "connect_timeout": 5}


STAT_COLUMNS = ("xact_commit", "xact_rollback", "sessions", "tup_returned", "tup_fetched", "tup_inserted", "tup_updated")


_stats_connection = None


def db_stats(name: str) -> dict[str, int]:
    """pg_stat_database of `name`, read from another database so the read costs it
    nothing, on one connection kept open: a storm can use every connection the server allows."""
    import psycopg
    from psycopg import sql

    global _stats_connection  # noqa: PLW0603 - one connection for the process, reopened when closed
    if _stats_connection is None or _stats_connection.closed:
        _stats_connection = psycopg.connect(**admin_params(), autocommit=True)
    _stats_connection.execute("SELECT pg_stat_clear_snapshot()")
    query = sql.SQL("SELECT {} FROM pg_stat_database WHERE datname = %s").format(
        sql.SQL(", ").join(map(sql.Identifier, STAT_COLUMNS))
    )
    row = _stats_connection.execute(query, [name]).fetchone()
    if row is None:
        raise RuntimeError(f"pg_stat_database has no row for {name}")
    return dict(zip(STAT_COLUMNS, row, strict=True))


def flush_own_stats() -> None:
    """PostgreSQL 15 publishes a backend's counters at a transaction end at most once a
    second: a statement a second after the last commit makes ours visible (one more
    transaction, which the caller counts)."""
    from django.db import connection

    time.sleep(1.1)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def stats_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {key: after[key] - before[key] for key in STAT_COLUMNS}


class Committer:
    """Commits one channel event at a time through the real services: a content is
    created (its first event, version 1) and then moved through its stages with
    `transition()` (one event each, version + 1), then the next content. No RQ job
    is enqueued: the pipeline is driven here. Each commit is one transaction."""

    def __init__(self, channel: Any, user: Any) -> None:
        from realtime.streams import channel_stream, current_seq

        self.channel, self.user = channel, user
        self.stream = channel_stream(channel.id)
        self.last = current_seq(self.stream)
        self.committed: dict[int, tuple[str, int]] = {}
        self.commit_times: dict[int, float] = {}
        self.content: Content | None = None

    def commit(self) -> int:
        from django.db import transaction
        from django.utils import timezone

        from contents.lifecycle import CONTENT
        from contents.models import Content, ContentStatus, ProcessingStatus
        from contents.services import content_move
        from contents.totals import totals_add
        from core.lifecycle import new_run_id

        following = {
            ProcessingStatus.UPLOADING: ProcessingStatus.SUMMARIZING,
            ProcessingStatus.SUMMARIZING: ProcessingStatus.QA_GENERATING,
            ProcessingStatus.QA_GENERATING: ProcessingStatus.COMPLETED,
        }
        started = time.time()
        # One outer transaction per commit, so each costs the database exactly one.
        with transaction.atomic():
            if self.content is None or self.content.processing_status not in following:
                now = timezone.now()
                content = Content(channel=self.channel, provider=self.user, url="https://example.com/bench",
                                  stage_started_at=now, heartbeat_at=now)
                content.job_id = new_run_id(CONTENT, content.id)
                content.save()
                # As content_submit() does, minus the RQ job: the bench drives the stages.
                totals_add(self.channel.id, {ContentStatus.IDLE: 1})
                CONTENT.publish(*CONTENT.event(content))
                self.content = content
            else:
                moved = content_move(self.content, to=following[ProcessingStatus(self.content.processing_status)])
                if moved is None:
                    raise RuntimeError("the bench content was moved by someone else")
        self.last += 1
        self.committed[self.last] = (str(self.content.id), self.content.version)
        self.commit_times[self.last] = started
        return self.last

    def verify(self) -> None:
        from realtime.models import Event

        rows = {seq: (p["content_id"], p["version"]) for seq, p in Event.objects.filter(stream=self.stream).values_list("seq", "payload")}
        if rows != self.committed:
            raise RuntimeError("the outbox does not hold exactly the events this bench committed")

    def cleanup(self) -> None:
        import redis
        from django.conf import settings

        from contents.models import Channel
        from realtime.models import Event, Stream
        from realtime.streams import group_name

        Event.objects.filter(stream=self.stream).delete()
        Stream.objects.filter(name=self.stream).delete()
        Channel.objects.filter(id=self.channel.id).delete()
        key = group_key(group_name(self.stream))
        with contextlib.suppress(redis.RedisError):  # the group expires on its own
            client = redis.Redis.from_url(settings.REDIS_URL)
            client.delete(key)
            client.close()


def group_key(group: str) -> bytes:
    """The channel layer's Redis key of a group."""
    from channels.layers import get_channel_layer

    from realtime.layer import ResilientRedisChannelLayer

    layer = get_channel_layer()
    assert isinstance(layer, ResilientRedisChannelLayer), "CHANNEL_LAYERS is not the Redis layer"
    return layer._group_key(group)


def group_size(stream: str) -> int:
    """Members of the stream's channel-layer group (live and stale)."""
    import redis
    from django.conf import settings

    from realtime.streams import group_name

    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        return client.zcard(group_key(group_name(stream)))
    finally:
        client.close()


def bench_setup(label: str) -> tuple[Any, str, Any]:
    """A fresh user, its bearer token and a new channel it owns."""
    from django.contrib.auth import get_user_model
    from knox.models import AuthToken

    from contents.services import channel_create

    user = get_user_model().objects.create(username=f"bench-{label}-{os.getpid()}-{int(time.time())}")
    _, token = AuthToken.objects.create(user=user)
    return user, token, channel_create(owner=user, name=f"bench {label}")


def analyse(reports: list[dict[str, Any]], committed: dict[int, tuple[str, int]]) -> list[dict[str, Any]]:
    """Per client: committed vs received, lost, duplicates by id and by (content, version),
    ids out of order, payloads that differ from what was committed."""
    rows = []
    for report in reports:
        ids = [event[0] for event in report["events"]]
        pairs = [(event[1], event[2]) for event in report["events"]]
        received = set(ids)
        rows.append({
            **{k: report[k] for k in ("index", "kind", "port", "failed_attempts", "resyncs", "live")},
            "committed": len(committed),
            "received": len(ids),
            # Missing on a connected client is lost; on one still reconnecting, not replayed yet.
            "lost": len(set(committed) - received) if report["live"] else 0,
            "missing_offline": 0 if report["live"] else len(set(committed) - received),
            "dup_ids": len(ids) - len(received),
            "dup_versions": len(pairs) - len(set(pairs)),
            "out_of_order": sum(1 for a, b in itertools.pairwise(ids) if b <= a),
            "wrong_payload": sum(1 for event in report["events"] if committed.get(event[0]) != (event[1], event[2])),
            "connects": len(report["connects"]),
            "errors": report["errors"],
            "server_errors": report["server_errors"],
        })
    return rows


def print_delivery_table(rows: list[dict[str, Any]]) -> None:
    print(f"  {'kind':<4} {'server':>6} {'clients':>7} {'committed':>9} {'received min..max':>17} {'lost':>5} {'offline miss':>12} "
          f"{'dup id':>6} {'dup ver':>7} {'order':>5} {'resync':>6} {'connects':>8} {'failed att.':>11} {'live at end':>11}")
    groups: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["kind"], row["port"]), []).append(row)
    groups[("all", "")] = rows
    for (kind, port), members in sorted(groups.items(), key=lambda item: (item[0][0] == "all", str(item[0]))):
        received = [m["received"] for m in members]
        print(f"  {kind:<4} {port!s:>6} {len(members):>7} {members[0]['committed']:>9} "
              f"{min(received):>8}..{max(received):<8} {sum(m['lost'] for m in members):>5} {sum(m['missing_offline'] for m in members):>12} "
              f"{sum(m['dup_ids'] for m in members):>6} {sum(m['dup_versions'] for m in members):>7} "
              f"{sum(m['out_of_order'] + m['wrong_payload'] for m in members):>5} {sum(m['resyncs'] for m in members):>6} "
              f"{sum(m['connects'] for m in members):>8} {sum(m['failed_attempts'] for m in members):>11} "
              f"{sum(m['live'] for m in members):>11}")
    flaws = ("lost", "missing_offline", "dup_ids", "dup_versions", "out_of_order", "wrong_payload", "resyncs")
    odd = [r for r in rows if any(r[flaw] for flaw in flaws)]
    for row in odd[:10]:
        print(f"  client {row['index']} ({row['kind']} :{row['port']}): committed {row['committed']} received {row['received']} "
              f"lost {row['lost']} missing while offline {row['missing_offline']} dup {row['dup_ids']}/{row['dup_versions']} "
              f"out of order {row['out_of_order']} "
              f"wrong payload {row['wrong_payload']} resync {row['resyncs']} connected at the end: {row['live']}")
    if len(odd) > 10:
        print(f"  ... and {len(odd) - 10} more clients with a discrepancy")
    errors: Counter[str] = Counter()
    for row in rows:
        errors.update(row["errors"])
        errors.update(f"server said {code}" for code in row["server_errors"])
    if errors:
        print("  client-side connection errors: " + ", ".join(f"{name} x{n}" for name, n in errors.most_common()))


def write_per_client(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w") as out:
        out.write("index,kind,port,committed,received,lost,missing_offline,live,dup_ids,dup_versions,out_of_order,wrong_payload,resyncs,connects,failed_attempts\n")
        for r in rows:
            out.write(",".join(str(r[k]) for k in ("index", "kind", "port", "committed", "received", "lost", "missing_offline", "live", "dup_ids",
                                                    "dup_versions", "out_of_order", "wrong_payload", "resyncs", "connects",
                                                    "failed_attempts")) + "\n")


def print_log_problems(servers: list[Daphne]) -> None:
    for server in servers:
        problems = server.log_problems()
        print(f"  daphne :{server.port} log {server.log_path}: {len(problems)} error lines")
        for line in problems[:8]:
            print(f"    {line[:200]}")


STORM_SERVER = os.environ.get("BENCH_STORM_SERVER", "granian")


def main() -> None:
    raise_fd_limit()
    quiet_http_logs()
    from bench.harness import PRODUCTION_ENV

    subscribes = subscribe_rate()
    database = "aistatus_bench_storm"
    workdir = Path(tempfile.mkdtemp(prefix="bench-storm-"))
    with bench_database(database) as database_url:
        user, token, channel = bench_setup("storm")
        committer = Committer(channel, user)
        # One host: two server processes as `make run` ships them (granian; daphne with BENCH_STORM_SERVER=daphne).
        servers = [Daphne(port=free_port(), database_url=database_url, log_path=workdir / f"{STORM_SERVER}-{i}.log",
                          env=dict(PRODUCTION_ENV), server=STORM_SERVER) for i in (1, 2)]
        clients = None
        try:
            for server in servers:
                server.spawn()
            for server in servers:
                server.wait_ready()
            started = time.time()
            clients = ClientGroup(ports=[s.port for s in servers], channel_id=str(channel.id), token=token,
                                  count=SUBSCRIBERS, workdir=workdir)
            live = clients.ask("wait_live", timeout=max(60, SUBSCRIBERS / 50))
            connect_seconds = live["t"] - started

            # Baseline: a burst delivered live to everyone.
            for _ in range(5):
                committer.commit()
            first_burst = min(committer.commit_times[s] for s in committer.commit_times)
            before = clients.ask("wait_current", last=committer.last, timeout=30)
            live_seconds = before["t"] - first_burst

            # What idle subscribers cost the database (heartbeats), for comparison.
            db_stats(database)
            flush_own_stats()
            idle_a, idle_t = db_stats(database), time.monotonic()
            time.sleep(10)
            idle = stats_delta(idle_a, db_stats(database))
            idle_seconds = time.monotonic() - idle_t

            # The restart: SIGTERM both, commit while they stop, are down, and boot.
            storm_before = db_stats(database)
            t_sigterm = time.time()
            for server in servers:
                server.terminate()
            during_stop = 0
            while not all(s.exited() for s in servers):
                if during_stop < 3:
                    committer.commit()
                    during_stop += 1
                if time.time() - t_sigterm > 20:
                    for s in servers:
                        s.stop(0)
                time.sleep(0.1)
            t_down = time.time()
            while_down = 0
            for _ in range(3):
                committer.commit()
                while_down += 1
                time.sleep(0.1)
            for server in servers:
                server.spawn()
            t_spawn = time.time()
            during_boot = 0
            for _ in range(3):
                committer.commit()
                during_boot += 1
                time.sleep(0.2)
            for server in servers:
                server.wait_listening()
            t_up = time.time()
            target = committer.last
            current = clients.ask("wait_current", last=target, timeout=45)
            t_current = current["t"]
            time.sleep(1)
            flush_own_stats()
            storm = stats_delta(storm_before, db_stats(database))
            # The bench's own transactions in the window: its commits and flush_own_stats().
            commits_in_window = during_stop + while_down + during_boot + 1
            members_after = group_size(committer.stream)

            # Live again after the storm.
            burst_start = time.time()
            for _ in range(5):
                committer.commit()
            after = clients.ask("wait_current", last=committer.last, timeout=20)
            after_seconds = after["t"] - burst_start
            report = clients.ask("report", timeout=60)["subscribers"]
            clients.wait(30)
            time.sleep(1)  # let the servers see the clients leave
        finally:
            if clients is not None:
                clients.close()
            for server in servers:
                server.stop()
        committer.verify()
        rows = analyse(report, committer.committed)
        members_final = group_size(committer.stream)
        committer.cleanup()

    # Per client: when it got the last id committed before the servers were back.
    reached = []
    for r in report:
        times = [event[3] for event in r["events"] if event[0] == target]
        reached.append(times[0] - t_sigterm if times else float("inf"))
    reconnects = sum(1 for r in report for t in r["connects"] if t >= t_sigterm)
    sse = sum(1 for r in report if r["kind"] == "sse")
    print(f"reconnect_storm: {SUBSCRIBERS} subscribers ({sse} SSE, {SUBSCRIBERS - sse} WebSocket) of one channel "
          f"over 2 {STORM_SERVER} processes (:{servers[0].port}, :{servers[1].port}), production heartbeat")
    if live["live"] < SUBSCRIBERS:
        print(f"  ONLY {live['live']}/{SUBSCRIBERS} connected after {connect_seconds:.1f} s (went on with the storm anyway)")
    else:
        print(f"  all connected in {connect_seconds:.1f} s")
    print(f"  before the restart 5 events reached {before['current']}/{SUBSCRIBERS} in {live_seconds * 1000:.0f} ms (baseline)")
    print(f"  SIGTERM both -> exited +{t_down - t_sigterm:.2f} s -> respawned +{t_spawn - t_sigterm:.2f} s -> listening +{t_up - t_sigterm:.2f} s")
    print(f"  committed in the outage: {during_stop} while stopping, {while_down} while down, {during_boot} while booting (last id {target})")
    status = "every client current" if current["current"] == SUBSCRIBERS else f"ONLY {current['current']}/{SUBSCRIBERS} current"
    ratio = f"  ratio to baseline {(t_current - t_up) / live_seconds:.0f}x" if current["current"] == before["current"] == SUBSCRIBERS else ""
    print(f"  {status} (id {target}) at +{t_current - t_sigterm:.2f} s after SIGTERM, +{t_current - t_up:.2f} s after listening{ratio}")
    print(f"  per client, SIGTERM -> current: p50 {percentile(reached, 50):.2f} s  p99 {percentile(reached, 99):.2f} s  "
          f"max {max(reached):.2f} s; reconnects {reconnects}")
    in_goal = sum(r <= STORM_GOAL_SECONDS for r in reached)
    lost = sum(row["lost"] + row["missing_offline"] for row in rows)
    print(f"  issue 20's goal, {SUBSCRIBERS:,} current within {STORM_GOAL_SECONDS} s of SIGTERM, nothing lost: "
          f"{'MET' if in_goal == SUBSCRIBERS and lost == 0 else 'NOT MET'} ({in_goal:,} current by then, {lost} events lost; "
          f"the servers were listening again at +{t_up - t_sigterm:.1f} s)")
    print(f"  subscribes per second, one worker: WebSocket {subscribes['rows'][0]['per_s']:,.0f}, SSE "
          f"{subscribes['rows'][1]['per_s']:,.0f}, floor {subscribes['rows'][2]['per_s']:,.0f} (issue 20's now: {NOW_SUBSCRIBES_PER_S})")
    checkpoints = [5, 10, 15, 20, 30, 45, 60]
    print(f"  current (id {target}) by: " + ", ".join(f"+{c} s {sum(r <= c for r in reached)}" for c in checkpoints)
          + f" of {SUBSCRIBERS}")
    if after["current"] == SUBSCRIBERS:
        print(f"  after the storm 5 live events reached everyone in {after_seconds * 1000:.0f} ms")
    else:
        print(f"  after the storm 5 live events reached only {after['current']}/{SUBSCRIBERS} within 20 s")
    print_delivery_table(rows)
    per_client = workdir / "per-client.csv"
    write_per_client(per_client, rows)
    print(f"  per-client committed vs received: {per_client}")
    net_xacts = storm["xact_commit"] - commits_in_window
    print(f"  database cost of the storm, pg_stat_database of {database} from SIGTERM to all current + 2 s "
          f"({t_current + 2 - t_sigterm:.1f} s; the bench's own {commits_in_window} transactions subtracted):")
    print(f"    transactions {net_xacts} ({net_xacts / max(reconnects, 1):.1f} per reconnect), rollbacks {storm['xact_rollback']}, "
          f"sessions {storm['sessions']} ({storm['sessions'] / max(reconnects, 1):.1f} per reconnect), "
          f"rows returned {storm['tup_returned']} fetched {storm['tup_fetched']}")
    print(f"    idle baseline before the restart: {idle['xact_commit'] / idle_seconds:.0f} transactions/s, "
          f"{idle['sessions'] / idle_seconds:.0f} sessions/s, {idle['tup_fetched'] / idle_seconds:.0f} rows fetched/s "
          f"(heartbeat catch-up of {SUBSCRIBERS} idle subscribers)")
    print(f"  channel-layer group members: {members_after} after the storm (live {SUBSCRIBERS}; the rest are "
          f"the killed connections' channels), {members_final} after all clients left")
    print_log_problems(servers)


if __name__ == "__main__" and sys.argv[1:2] == ["--clients"]:
    asyncio.run(run_clients(json.loads(sys.argv[2])))
