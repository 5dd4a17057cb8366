"""Memory per idle stream (issue 20): what one idle, authenticated WebSocket and one
idle SSE stream cost the server holding them, on each server that can serve them,
with the same application (config.asgi) and with a bare ASGI app (the server's own
share, the floor), next to a plain `websockets` server on uvloop (the floor of
Python itself).

Per candidate, one server process (one worker) on the bench database, production
settings: WARM streams of a kind are opened first (lazy imports, pools, the hub's
start), RSS read from /proc (every process of the server's group), then N more of
the kind, idle SETTLE s, RSS again: (after - before) / N. WebSockets first, then SSE
on top. The clients (own processes, `python -m bench.stream_memory --hold CONFIG`)
authenticate as a browser: a ticket from POST /v1/realtime/tickets, the handshake
and a subscribe answered `subscribed`; SSE with a bearer token, until `: connected`.

Then the held rows (make bench's): HELD streams (half WebSocket, half SSE) held by one
host for HOLD_SECONDS, a worker per core, /healthz probed twice a second meanwhile
(p50/p99), and how many were still open at the end (none dropped); once as `make run`
serves them today (granian), once as proposed (SETUPS: WebSockets on uvicorn).

BENCH_STREAM_MEMORY_N (2,000; 0: no comparison), _CANDIDATES (names, comma separated;
default granian as shipped and uvicorn with websockets-sansio; "all": every one), _APPS
(bare,app), _HELD (20,000; 0: no held row), _HOLD_SECONDS (600), _SETUPS (the held
rows: shipped,proposed). A quick run: BENCH_STREAM_MEMORY_N=300 _HELD=2000
_HOLD_SECONDS=30. `python -m bench stream_memory`, or `python -m bench.stream_memory`
alone; `python -m bench.stream_memory --project-share N`: the application's own Python
allocations and tasks per stream (tracemalloc)."""

import asyncio
import json
import os
import queue
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
N = int(os.environ.get("BENCH_STREAM_MEMORY_N", "2000"))
WARM = 50
SETTLE = float(os.environ.get("BENCH_STREAM_MEMORY_SETTLE", "3"))
HELD = int(os.environ.get("BENCH_STREAM_MEMORY_HELD", "20000"))
HOLD_SECONDS = float(os.environ.get("BENCH_STREAM_MEMORY_HOLD_SECONDS", "600"))
HELD_SETUPS = [x for x in os.environ.get("BENCH_STREAM_MEMORY_SETUPS", "shipped,proposed").split(",") if x]
# Connections one client process holds at most, and opens at a time.
PER_CLIENT = 5000
CONCURRENCY = 16
# The issue's "now": 10,000 WebSockets held by one granian worker, 1.85 GB.
ISSUE_NOW_KIB = 176
GOAL_KIB = 64
# The applications each candidate serves: the bare one (the server's own share) and the project's.
ALL_APPS = {"bare": ("bench.stream_memory:floor_app", "bare ASGI app"), "app": ("config.asgi:application", "config.asgi")}
APPS = [ALL_APPS[a] for a in os.environ.get("BENCH_STREAM_MEMORY_APPS", "bare,app").split(",")]
# hypercorn and wsproto are not in requirements.lock (nothing ships them): a directory
# they were installed in for this measurement (`pip install --target DIR hypercorn wsproto`);
# their candidates are skipped when they are found neither there nor in the virtualenv.
EXTRA = Path(os.environ.get("BENCH_STREAM_MEMORY_EXTRA", "") or "/nonexistent")
WS_SERVER = "uvicorn as the WebSocket server (WEB_WS_PORT)"
NEEDS = {"uvicorn httptools + wsproto": "wsproto", "hypercorn (uvloop)": "hypercorn"}


def available(name: str) -> bool:
    import importlib.util

    module = NEEDS.get(name)
    return module is None or importlib.util.find_spec(module) is not None or (EXTRA / module).is_dir()


# --- the floors: a bare ASGI app, and plain websockets / asyncio on uvloop -------------------


async def floor_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The bare ASGI app: what the bench's clients need and nothing else (a ticket, a
    WebSocket answering `subscribed`, an SSE stream's `: connected`), each held by its
    request's own coroutine as the server gives it, as the application's are."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if "subscribe" in (message.get("text") or ""):
                await send({"type": "websocket.send", "text": '{"type":"subscribed"}'})
    path = scope["path"]
    while (await receive()).get("more_body"):
        pass
    if path.endswith("/events"):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b": connected\n\n", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass
        return
    status, body = (201, b'{"ticket":"floor"}') if path == "/v1/realtime/tickets" else (200, b"ok")
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def run_plain_floor(ws_port: int, sse_port: int) -> None:
    """`websockets` on uvloop for WebSocket (its own connection handling, a handler
    coroutine per connection), and an asyncio Protocol on uvloop for SSE (no task at
    all): what Python itself needs per socket."""
    import uvloop
    from websockets.asyncio.server import serve

    class SSE(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport, self.head = transport, b""

        def data_received(self, data: bytes) -> None:
            self.head += data
            if b"\r\n\r\n" in self.head:
                self.head = b""
                self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                                     b"d\r\n: connected\n\n\r\n")

    async def handler(ws: Any) -> None:
        async for message in ws:
            if "subscribe" in message:
                await ws.send('{"type":"subscribed"}')

    async def main() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_server(SSE, "127.0.0.1", sse_port, backlog=4096)
        async with serve(handler, "127.0.0.1", ws_port, backlog=4096):
            await asyncio.Future()

    uvloop.run(main())


# --- the project's own share: the application under tracemalloc ----------------------------


_traced: dict[str, Any] = {}


async def traced_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """config.asgi's application, with GET /__bench/memory?save=PATH answered here: the
    live asyncio tasks by coroutine, and a tracemalloc snapshot saved to PATH (the
    server started with PYTHONTRACEMALLOC=FRAMES). For `--project-share`, never served."""
    if "application" not in _traced:
        from config.asgi import application

        _traced["application"] = application
    if scope["type"] == "http" and scope["path"] == "/__bench/memory":
        import gc
        import tracemalloc
        from collections import Counter
        from urllib.parse import parse_qs

        gc.collect()
        tasks = Counter(getattr(t.get_coro(), "__qualname__", "?") for t in asyncio.all_tasks())
        save = parse_qs(scope["query_string"].decode()).get("save", [""])[0]
        if save:
            tracemalloc.take_snapshot().dump(save)
        body = json.dumps({"tasks": dict(tasks), "traced_kib": tracemalloc.get_traced_memory()[0] / 1024}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        return
    await _traced["application"](scope, receive, send)


def project_share(count: int) -> dict[str, Any]:
    """The application's Python allocations and tasks per idle stream, by kind: uvicorn
    (httptools, websockets) serving traced_app under tracemalloc; snapshots before and
    after `count` streams of a kind, their difference attributed to the innermost
    frame of this project (else of a library) that made it."""
    import tracemalloc

    import httpx

    from bench.reconnect_storm import bench_database, bench_setup, free_port

    raise_fd_limit()
    workdir = Path(tempfile.mkdtemp(prefix="bench-stream-share-"))
    out: dict[str, Any] = {}
    with bench_database("aistatus_bench_stream_memory") as database_url:
        _, token, channel = bench_setup("stream-share")
        env = {**server_env(database_url), "PYTHONTRACEMALLOC": "12"}
        port = free_port()
        command = candidates(port, "bench.stream_memory:traced_app")["uvicorn httptools + websockets"]
        server = Server(command, env, workdir / "server.log", port)
        target = {"ws_port": port, "sse_port": port, "ticket_port": port, "origin_port": port}
        held: list[Clients] = []

        def snapshot(name: str) -> tuple[dict[str, int], Any, int]:
            path = workdir / f"{name}.snap"
            answer = httpx.get(f"http://127.0.0.1:{port}/__bench/memory", params={"save": str(path)}, timeout=300).json()
            return answer["tasks"], tracemalloc.Snapshot.load(str(path)), server.rss_kib()

        try:
            for kind in ("ws", "sse"):
                clients, *_ = open_streams(kind, WARM, target, str(channel.id), token, workdir / "clients.log", 120)
                held += clients
                tasks0, snap0, rss0 = snapshot(f"{kind}-before")
                clients, opened, errors, _ = open_streams(kind, count, target, str(channel.id), token,
                                                          workdir / "clients.log", max(120.0, count / 10))
                held += clients
                tasks1, snap1, rss1 = snapshot(f"{kind}-after")
                by_site: dict[str, int] = {}
                for stat in snap1.compare_to(snap0, "traceback"):
                    if stat.size_diff == 0:
                        continue
                    site = _site(list(stat.traceback))
                    by_site[site] = by_site.get(site, 0) + stat.size_diff
                out[kind] = {
                    "opened": opened, "errors": errors, "rss_kib_per_stream": (rss1 - rss0) / max(opened, 1),
                    "traced_kib_per_stream": sum(by_site.values()) / 1024 / max(opened, 1),
                    "tasks_per_stream": {k: (tasks1.get(k, 0) - tasks0.get(k, 0)) / max(opened, 1)
                                         for k in {*tasks0, *tasks1} if tasks1.get(k, 0) != tasks0.get(k, 0)},
                    "by_site_kib_per_stream": dict(sorted(((site, size / 1024 / max(opened, 1)) for site, size in by_site.items()),
                                                          key=lambda kv: -kv[1])[:40]),
                }
        finally:
            for c in held:
                c.close()
            server.stop()
    for kind, f in out.items():
        print(f"project share, {kind}: {f['opened']:,} streams on uvicorn under tracemalloc: RSS {f['rss_kib_per_stream']:.1f} KiB"
              f" per stream, Python allocations {f['traced_kib_per_stream']:.1f} KiB; tasks per stream {f['tasks_per_stream']}")
        for site, kib in f["by_site_kib_per_stream"].items():
            print(f"    {kib:7.2f} KiB  {site}")
    print(f"  logs: {workdir}")
    return out


def _site(frames: list[Any]) -> str:
    """Where an allocation is the project's: the innermost frame in this project's
    source (not its virtualenv), with the library frame it allocated in; else the
    innermost frame of all."""
    root = str(ROOT)
    frames = frames[::-1]  # tracemalloc lists the oldest call first
    innermost = frames[0]
    for frame in frames:
        if frame.filename.startswith(root) and "/.venv/" not in frame.filename:
            lib = "" if frame is innermost else f" <- {_short(innermost.filename)}:{innermost.lineno}"
            return f"{_short(frame.filename)}:{frame.lineno}{lib}"
    return f"{_short(innermost.filename)}:{innermost.lineno} (library)"


def _short(filename: str) -> str:
    for cut in ("/site-packages/", str(ROOT) + "/", "/lib/python3."):
        if cut in filename:
            return filename.split(cut, 1)[1]
    return filename


# --- the client process -----------------------------------------------------------------------


def say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def hold(config: dict[str, Any]) -> None:
    """Open `count` idle `kind` streams, `concurrency` at a time; say "connected"; then
    on each line of stdin say how many are still open; at its end, exit."""
    from websockets.asyncio.client import connect
    from websockets.typing import Origin

    from bench.clients import sse_open, stream_chunks, ticket

    port, kind, count = config["port"], config["kind"], config["count"]
    held: list[Any] = []
    errors: dict[str, int] = {}
    remaining = count
    started = time.monotonic()
    deadline = started + config["connect_seconds"]

    async def open_one(connection: list) -> None:
        if kind == "sse":
            reader, writer, headers, _ = await sse_open(port, config["channel_id"], config["token"])
            buffer = b""
            async for data, _ in stream_chunks(reader, headers):
                buffer += data
                if b": connected" in buffer:
                    break
            held.append((reader, writer))
            return
        t = await ticket(connection, config["ticket_port"], config["token"]) if config["ticket_port"] else "none"
        ws = await connect(f"ws://127.0.0.1:{port}/api/contents/{config['channel_id']}/ws?ticket={t}",
                           origin=Origin(f"http://127.0.0.1:{config['origin_port']}"), open_timeout=60, max_queue=None,
                           compression=None)
        await ws.send(json.dumps({"type": "subscribe", "channel_id": config["channel_id"]}))
        while json.loads(await asyncio.wait_for(ws.recv(), 60)).get("type") != "subscribed":
            pass
        held.append(ws)

    async def worker() -> None:
        nonlocal remaining
        connection: list = []
        while remaining > 0 and time.monotonic() < deadline:
            remaining -= 1
            try:
                await asyncio.wait_for(open_one(connection), max(0.1, deadline - time.monotonic()))
            except Exception as error:  # noqa: BLE001 - counted, and the worker goes on
                errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
                if connection:
                    connection[1].close()
                    connection.clear()
                if sum(errors.values()) > max(50, count // 10):
                    return
        if connection:
            connection[1].close()

    await asyncio.gather(*(worker() for _ in range(config["concurrency"])))
    say({"phase": "connected", "held": len(held), "errors": errors, "seconds": time.monotonic() - started})

    def alive() -> int:
        if kind == "sse":
            return sum(1 for reader, writer in held if not reader.at_eof() and not writer.is_closing())
        return sum(1 for ws in held if ws.state.name == "OPEN")

    loop = asyncio.get_running_loop()
    while await loop.run_in_executor(None, sys.stdin.readline):
        say({"phase": "alive", "alive": alive(), "held": len(held)})
    os._exit(0)  # thousands of sockets: the kernel closes them faster than a polite close


class Clients:
    """One `--hold` client process."""

    def __init__(self, config: dict[str, Any], log: Path) -> None:
        with log.open("ab") as err:
            self.process = subprocess.Popen([sys.executable, "-m", "bench.stream_memory", "--hold", json.dumps(config)],
                                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True)
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(json.loads(line))
        self.lines.put({"phase": "exit"})

    def next(self, timeout: float) -> dict[str, Any]:
        line = self.lines.get(timeout=timeout)
        if line["phase"] == "exit":
            raise RuntimeError("a client process ended early; see its log")
        return line

    def alive(self) -> int:
        assert self.process.stdin is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        return int(self.next(60)["alive"])

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def open_streams(kind: str, count: int, target: dict[str, Any], channel_id: str, token: str, log: Path,
                 connect_seconds: float) -> tuple[list[Clients], int, dict[str, int], float]:
    """`count` idle streams of `kind` over as many client processes as needed."""
    processes = max(1, -(-count // PER_CLIENT))
    shares = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
    port = target["sse_port"] if kind == "sse" else target["ws_port"]
    clients = [Clients({"kind": kind, "count": share, "port": port, "ticket_port": target["ticket_port"],
                        "origin_port": target["origin_port"], "channel_id": channel_id, "token": token,
                        "concurrency": CONCURRENCY, "connect_seconds": connect_seconds}, log) for share in shares]
    answers = [c.next(connect_seconds + 120) for c in clients]
    errors: dict[str, int] = {}
    for answer in answers:
        for name, n in answer["errors"].items():
            errors[name] = errors.get(name, 0) + n
    return clients, sum(a["held"] for a in answers), errors, max(a["seconds"] for a in answers)


# --- the servers ------------------------------------------------------------------------------


def group_pids(pgid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            pids.append(int(stat.parent.name))
    return pids


def group_rss_kib(pgid: int) -> int:
    from bench.reconnect_storm import rss_kib

    return sum(rss_kib(pid) for pid in group_pids(pgid))


def candidates(port: int, app: str, workers: int = 1) -> dict[str, list[str]]:
    """name -> command serving `app` on `port`, one worker, as each would be run in
    production (no access log, a deep backlog)."""
    from config.web_server import granian_command, websocket_server_command

    py = sys.executable

    def granian(*extra: str) -> list[str]:
        command = granian_command(host="127.0.0.1", port=port, workers=workers, extra=[
            "--no-access-log", "--backlog", "4096", "--backpressure", "20000", *extra])
        return [*command[:-1], app]

    def uvicorn(*options: str) -> list[str]:
        return [py, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--no-access-log",
                "--backlog", "4096", "--lifespan", "off", *(["--workers", str(workers)] if workers > 1 else []),
                *options, app]

    return {
        "granian (as shipped)": granian(),
        "granian --http1-buffer-size 8192": [*granian()[:-1], "--http1-buffer-size", "8192", app],
        "granian --runtime-mode st": granian("--runtime-mode", "st"),
        "granian --loop asyncio": [*granian()[:-1], "--loop", "asyncio", app],
        "uvicorn httptools + websockets": uvicorn("--http", "httptools", "--ws", "websockets"),
        "uvicorn httptools + websockets-sansio": uvicorn("--http", "httptools", "--ws", "websockets-sansio"),
        # What run_stack.sh runs on WEB_WS_PORT for a load balancer (the one above, with its bounds).
        WS_SERVER: [*websocket_server_command(host="127.0.0.1", port=port, workers=workers)[:-1], app],
        "uvicorn httptools + wsproto": uvicorn("--http", "httptools", "--ws", "wsproto"),
        "uvicorn h11 + websockets": uvicorn("--http", "h11", "--ws", "websockets"),
        "hypercorn (uvloop)": [py, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", "--worker-class", "uvloop",
                               "--backlog", "4096", *(["--workers", str(workers)] if workers > 1 else []), app],
        "daphne": [py, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), app],
    }


class Server:
    """A candidate in a process group of its own (RSS and CPU of every process in it)."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path, port: int, plain: bool = False) -> None:
        self.port = port
        with log.open("ab") as out:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out, start_new_session=True)
        import httpx

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                # The plain floor answers any GET on its WebSocket port 426 (Upgrade Required).
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == (426 if plain else 200):
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{command[:4]} did not start; see {log}")

    def rss_kib(self) -> int:
        return group_rss_kib(self.process.pid)

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass


def server_env(database_url: str) -> dict[str, str]:
    from bench.harness import PRODUCTION_ENV

    env = {**os.environ, **PRODUCTION_ENV, "DATABASE_URL": database_url}
    env.pop("REALTIME_HEARTBEAT_SECONDS", None)  # production heartbeat
    if EXTRA.is_dir():  # hypercorn and wsproto, installed beside the lock for this measurement only
        env["PYTHONPATH"] = f"{ROOT}:{EXTRA}"
    return env


def raise_fd_limit() -> None:
    """Every stream is a descriptor on both sides: 40,000+ as root (the hard limit too)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 200_000
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def measure(name: str, command: list[str], env: dict[str, str], target: dict[str, Any], channel_id: str, token: str,
            workdir: Path, count: int, plain: bool = False) -> dict[str, Any]:
    """Per kind: WARM streams, RSS, `count` more, RSS; KiB per stream."""
    log = workdir / f"{name.split()[0]}-{target['ws_port']}.log"
    server = Server(command, env, log, target["ws_port"], plain=plain)
    held: list[Clients] = []
    row: dict[str, Any] = {"server": name}
    try:
        row["idle_rss_mib"] = server.rss_kib() / 1024
        for kind in ("ws", "sse"):
            clients, warm, errors, _ = open_streams(kind, WARM, target, channel_id, token, workdir / "clients.log", 60)
            held += clients
            time.sleep(SETTLE)
            before = server.rss_kib()
            clients, opened, more_errors, seconds = open_streams(kind, count, target, channel_id, token,
                                                                 workdir / "clients.log", max(60.0, count / 20))
            held += clients
            time.sleep(SETTLE)
            after = server.rss_kib()
            errors = {k: errors.get(k, 0) + more_errors.get(k, 0) for k in {*errors, *more_errors}}
            row[kind] = {"held": opened, "warm": warm, "kib": (after - before) / max(opened, 1), "errors": errors,
                         "connects_per_s": opened / seconds if seconds else 0.0, "rss_mib": after / 1024}
            if server.process.poll() is not None:
                raise RuntimeError(f"{name} exited; see {log}")
        row["alive"] = sum(c.alive() for c in held)
        row["opened"] = sum(row[k]["held"] + row[k]["warm"] for k in ("ws", "sse"))
    except Exception as error:  # noqa: BLE001 - reported in the table; the other candidates still run
        row["error"] = f"{type(error).__name__}: {error}"[:160]
    finally:
        for c in held:
            c.close()
        server.stop()
    return row


# The held row's setups: what serves the REST requests and SSE, and what serves the
# WebSockets when that is another server (the proposal: same application, routed by path).
SETUPS: dict[str, dict[str, Any]] = {
    "shipped": {"label": "make run today: granian, config.asgi", "rest": ("granian (as shipped)", "config.asgi:application"),
                "ws": None},
    "proposed": {"label": "behind a load balancer: REST and SSE on granian, WebSockets on the WebSocket server "
                          "(uvicorn on WEB_WS_PORT), config.asgi",
                 "rest": ("granian (as shipped)", "config.asgi:application"),
                 "ws": (WS_SERVER, "config.asgi:application")},
}


def held_row(setup: str, env: dict[str, str], channel_id: str, token: str, workdir: Path, workers: int) -> dict[str, Any]:
    """HELD streams (half each kind) held for HOLD_SECONDS by one host with `workers`
    worker processes per server, /healthz probed twice a second meanwhile."""
    import httpx

    from bench.reconnect_storm import free_port, percentile

    spec = SETUPS[setup]
    port = free_port()
    rest_name, rest_app = spec["rest"]
    servers = [Server(candidates(port, rest_app, workers)[rest_name], env, workdir / f"held-{setup}.log", port)]
    target = {"ws_port": port, "sse_port": port, "ticket_port": port, "origin_port": port}
    held: list[Clients] = []
    out: dict[str, Any] = {"setup": setup, "server": spec["label"], "workers": workers, "streams": HELD, "seconds": HOLD_SECONDS}
    try:
        if spec["ws"]:
            ws_port = free_port()
            ws_name, ws_app = spec["ws"]
            servers.append(Server(candidates(ws_port, ws_app, workers)[ws_name], env, workdir / f"held-{setup}-ws.log", ws_port))
            target.update(ws_port=ws_port, origin_port=ws_port)

        def rss() -> int:
            return sum(server.rss_kib() for server in servers)

        idle = rss()
        idle_each = [server.rss_kib() for server in servers]
        out["idle_rss_mib"] = idle / 1024
        counts: dict[str, dict[str, Any]] = {}
        for kind in ("ws", "sse"):
            clients, opened, errors, seconds = open_streams(kind, HELD // 2, target, channel_id, token, workdir / "clients.log",
                                                            max(120.0, HELD / 40))
            held += clients
            counts[kind] = {"held": opened, "errors": errors, "connects_per_s": opened / seconds if seconds else 0.0}
            time.sleep(SETTLE)
            counts[kind]["rss_kib"] = rss()
            # Each server's (the WebSocket server's growth, and the REST server's, which
            # answered the tickets), when there are two.
            counts[kind]["rss_kib_each"] = [server.rss_kib() for server in servers]
        out["kinds"] = counts
        out["idle_rss_kib_each"] = idle_each
        total = counts["ws"]["held"] + counts["sse"]["held"]
        out["held"] = total
        out["kib_ws"] = (counts["ws"]["rss_kib"] - idle) / max(counts["ws"]["held"], 1)
        out["kib_sse"] = (counts["sse"]["rss_kib"] - counts["ws"]["rss_kib"]) / max(counts["sse"]["held"], 1)
        out["kib_per_stream"] = (counts["sse"]["rss_kib"] - idle) / max(total, 1)
        probes: list[float] = []
        failures = 0
        started = time.monotonic()
        rss_samples: list[tuple[float, float]] = []
        with httpx.Client(timeout=10) as http:
            while (elapsed := time.monotonic() - started) < HOLD_SECONDS:
                t = time.perf_counter()
                try:
                    ok = http.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
                except httpx.HTTPError:
                    ok = False
                probes.append(time.perf_counter() - t)
                failures += not ok
                if not rss_samples or elapsed - rss_samples[-1][0] >= 60:
                    rss_samples.append((elapsed, rss() / 1024))
                time.sleep(max(0.0, 0.5 - (time.perf_counter() - t)))
        out["rss_end_mib"] = rss() / 1024
        out["rss_samples"] = rss_samples
        out["healthz_ms"] = {"p50": percentile(probes, 50) * 1000, "p99": percentile(probes, 99) * 1000,
                             "max": max(probes) * 1000, "probes": len(probes), "failures": failures}
        out["alive_at_end"] = sum(c.alive() for c in held)
    finally:
        for c in held:
            c.close()
        for server in servers:
            server.stop()
    return out


def main() -> dict[str, Any]:
    from bench.reconnect_storm import bench_database, bench_setup, free_port, quiet_http_logs

    quiet_http_logs()
    raise_fd_limit()
    workdir = Path(tempfile.mkdtemp(prefix="bench-stream-memory-"))
    # By default the shipped server and the proposed WebSocket one (with their floors);
    # "all": every candidate (about 25 minutes at N = 2,000 on 2 shared cores).
    chosen = os.environ.get("BENCH_STREAM_MEMORY_CANDIDATES", f"granian (as shipped),{WS_SERVER}")
    wanted = [] if chosen == "all" else [n.strip() for n in chosen.split(",") if n.strip()]
    rows: list[dict[str, Any]] = []
    figures: dict[str, Any] = {"n": N, "warm": WARM, "rows": rows, "issue_now_kib": ISSUE_NOW_KIB, "goal_kib": GOAL_KIB}
    with bench_database("aistatus_bench_stream_memory") as database_url:
        _, token, channel = bench_setup("stream-memory")
        channel_id = str(channel.id)
        env = server_env(database_url)
        if N:
            # The floor of Python itself: websockets on uvloop, an asyncio Protocol for SSE.
            ws_port, sse_port = free_port(), free_port()
            plain = [sys.executable, "-m", "bench.stream_memory", "--plain-floor", str(ws_port), str(sse_port)]
            target = {"ws_port": ws_port, "sse_port": sse_port, "ticket_port": 0, "origin_port": ws_port}
            rows.append({**measure("websockets + asyncio Protocol on uvloop", plain, env,
                                   {**target, "ws_port": ws_port}, channel_id, token, workdir, N, plain=True), "app": "floor"})
            for name in candidates(0, "x"):
                if wanted and name not in wanted:
                    continue
                if not available(name):
                    print(f"  {name}: skipped ({NEEDS[name]} is not installed; BENCH_STREAM_MEMORY_EXTRA names where it is)")
                    continue
                for app, label in APPS:
                    port = free_port()
                    command = candidates(port, app)[name]
                    target = {"ws_port": port, "sse_port": port, "ticket_port": port, "origin_port": port}
                    row = measure(name, command, env, target, channel_id, token, workdir, N)
                    rows.append({**row, "app": label})
                    print_row(rows[-1], flush=True)
        if HELD:
            workers = int(os.environ.get("WEB_WORKERS", os.cpu_count() or 2))
            figures["held"] = []
            for setup in HELD_SETUPS:
                try:
                    figures["held"].append(held_row(setup, env, channel_id, token, workdir, workers))
                except Exception as error:  # noqa: BLE001 - reported; the other setup still runs
                    figures["held"].append({"setup": setup, "error": f"{type(error).__name__}: {error}"[:200]})
                print_held(figures["held"][-1], flush=True)
    print_figures(figures)
    print(f"  logs: {workdir}")
    return figures


def print_row(row: dict[str, Any], flush: bool = False) -> None:
    if "error" in row:
        print(f"  {row['server']:<40} {row['app']:<14} FAILED: {row['error']}", flush=flush)
        return
    ws, sse = row["ws"], row["sse"]
    errors = {k: v for kind in ("ws", "sse") for k, v in row[kind]["errors"].items()}
    print(f"  {row['server']:<40} {row['app']:<14} WS {ws['kib']:6.1f} KiB ({ws['held']:,}, {ws['connects_per_s']:4.0f}/s)  "
          f"SSE {sse['kib']:6.1f} KiB ({sse['held']:,}, {sse['connects_per_s']:4.0f}/s)  "
          f"idle {row['idle_rss_mib']:5.0f} MiB  open at end {row['alive']:,}/{row['opened']:,}"
          + (f"  errors {errors}" if errors else ""), flush=flush)


def print_figures(f: dict[str, Any]) -> None:
    from bench import harness

    if f["rows"]:
        print(f"stream_memory: RSS per idle stream (KiB: after - before, / N) in the server's processes, one worker; {f['n']:,} "
              f"WebSockets then {f['n']:,} SSE on top, each after {f['warm']} warm-up streams; the issue's now: "
              f"{ISSUE_NOW_KIB} KiB per WebSocket (granian), goal <= {GOAL_KIB} KiB")
        harness.print_table(
            ["server", "app", "WS KiB", "SSE KiB", "WS conn/s", "SSE conn/s", "idle RSS MiB", "open at end", "errors"],
            [[r["server"], r["app"], "FAILED", r["error"][:60], "", "", "", "", ""] if "error" in r else
             [r["server"], r["app"], r["ws"]["kib"], r["sse"]["kib"], r["ws"]["connects_per_s"], r["sse"]["connects_per_s"],
              r["idle_rss_mib"], f"{r['alive']:,}/{r['opened']:,}",
              str({k: v for kind in ("ws", "sse") for k, v in r[kind]["errors"].items()} or "")] for r in f["rows"]])
    for held in f.get("held", []):
        print_held(held)


def print_held(held: dict[str, Any], flush: bool = False) -> None:
    if "error" in held:
        print(f"  held ({held['setup']}): FAILED: {held['error']}", flush=flush)
        return
    h = held["healthz_ms"]
    print(f"  held ({held['setup']}): {held['held']:,} of {held['streams']:,} streams ({held['kinds']['ws']['held']:,} WebSocket, "
          f"{held['kinds']['sse']['held']:,} SSE) by one host ({held['server']}; {held['workers']} workers each) for "
          f"{held['seconds']:.0f} s: {held['kib_per_stream']:.1f} KiB per stream (WebSocket {held['kib_ws']:.1f}, SSE "
          f"{held['kib_sse']:.1f}; the issue's now {ISSUE_NOW_KIB}, goal <= {GOAL_KIB}); RSS {held['idle_rss_mib']:.0f} MiB idle, "
          f"{held['kinds']['sse']['rss_kib'] / 1024:.0f} MiB held, {held['rss_end_mib']:.0f} MiB at the end; "
          f"open at the end {held['alive_at_end']:,}/{held['held']:,}; /healthz meanwhile p50 {h['p50']:.1f} ms "
          f"p99 {h['p99']:.1f} ms max {h['max']:.0f} ms over {h['probes']} probes ({h['failures']} failed)", flush=flush)
    each = held.get("idle_rss_kib_each", [])
    if len(each) > 1:
        ws, sse = held["kinds"]["ws"]["rss_kib_each"], held["kinds"]["sse"]["rss_kib_each"]
        print(f"  held ({held['setup']}): by server, MiB idle / after the WebSockets / after the SSE: REST and SSE server "
              f"{each[0] / 1024:.0f} / {ws[0] / 1024:.0f} / {sse[0] / 1024:.0f}, WebSocket server {each[1] / 1024:.0f} / "
              f"{ws[1] / 1024:.0f} / {sse[1] / 1024:.0f}: the WebSocket server's own {(ws[1] - each[1]) / max(held['kinds']['ws']['held'], 1):.1f} "
              f"KiB per WebSocket", flush=flush)
    errors = {k: v for kind in ("ws", "sse") for k, v in held["kinds"][kind]["errors"].items()}
    if errors:
        print(f"  held ({held['setup']}): connect errors {errors}", flush=flush)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--hold"]:
        raise_fd_limit()
        asyncio.run(hold(json.loads(sys.argv[2])))
    elif sys.argv[1:2] == ["--project-share"]:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        os.environ.setdefault("DJANGO_ENV", "development")
        import django

        django.setup()
        project_share(int(sys.argv[2]) if sys.argv[2:] else 1000)
    elif sys.argv[1:2] == ["--plain-floor"]:
        raise_fd_limit()
        run_plain_floor(int(sys.argv[2]), int(sys.argv[3]))
    else:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        os.environ.setdefault("DJANGO_ENV", "development")
        import django

        django.setup()
        main()
