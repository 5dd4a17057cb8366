"""The cluster of scripts/cluster.py for tests: started with the suite's settings and
timings, a Django snippet run on one of its hosts, its clients in a process of their own.

    with ClusterUnderTest() as cluster:         # namespaces NAME-*, ports on 127.0.0.1
        setup = cluster.make_users(40)       # users, their tokens, a channel they all read
        fleet = Fleet(cluster, setup, ...)   # SSE and WebSocket clients through the LB

The clients run in a subprocess (`python -m tests.cluster clients CONFIG`, no Django),
driven by JSON lines, so that 400 of them share no CPU slice or event loop with the
test; they are bench.reconnect_storm's subscribers, which reconnect on their own
(SSE with Last-Event-ID, WebSocket with `since`) and record every event they get.
`python -m tests.cluster ai-stub PORT DELAY` is the AI provider the app hosts call (in
the data host's namespace), answering each call after DELAY seconds, so that a content
is still in its pipeline when a test breaks a host.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import os
import queue
import random
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from cluster import APP_WS_PORT as APP_WS_PORT  # noqa: E402 - scripts/ is no package; re-exported for the tests
from cluster import APPS, FORWARDS, Cluster, address, port_free  # noqa: E402

PYTHON = str(ROOT / ".venv" / "bin" / "python")
METRICS_TOKEN = "cluster-test-metrics-token"
AI_STUB_PORT = 9100
# The suite's settings with what a cluster test needs: the clients are one address
# behind the load balancer (no per-client bound, no throttle), quicker heartbeats and
# stall sweeps (so that a recovery takes seconds), a slow AI provider.
TEST_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings_test",
    "THROTTLE_USER": "1000000/min",
    "THROTTLE_ANON": "1000000/min",
    "WEB_MAX_OPEN_PER_CLIENT": "0",
    "REALTIME_HEARTBEAT_SECONDS": "2",
    "CONTENT_STALL_SECONDS": "10",
    "CONTENT_SWEEP_INTERVAL": "2",
    "WEB_DRAIN_SECONDS": "5",
    "METRICS_TOKEN": METRICS_TOKEN,
    "AI_PROVIDER": "openai",
    "AI_BASE_URL": f"http://{address('data')}:{AI_STUB_PORT}/v1",
    "AI_API_KEY": "cluster-test",
    # An access line per request and health check is more than these tests read.
    "LOG_LEVEL": "WARNING",
}


def cluster_unavailable() -> str | None:
    """Why the cluster cannot run here, or None."""
    if os.environ.get("CLUSTER_TESTS") == "0":
        return "CLUSTER_TESTS=0 leaves the cluster tests out"
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return "the cluster needs root and iproute2's ip (network namespaces)"
    if shutil.which("haproxy") is None:
        return "the cluster needs Debian's haproxy (scripts/install_test_deps.sh installs it)"
    if not list(Path("/usr/lib/postgresql").glob("*/bin/postgres")) or shutil.which("redis-server") is None:
        return "the cluster needs Debian's postgresql and redis-server"
    return None


def free_port_range(count: int) -> int:
    """A first port of `count` free consecutive ports on 127.0.0.1, below the ephemeral
    ports (where outgoing connections take every other one)."""
    for _ in range(200):
        first = random.randrange(20000, 32000 - count)
        if all(port_free(first + i) for i in range(count)):
            return first
    raise RuntimeError("no range of free ports")


class ClusterUnderTest(Cluster):
    """A cluster of the test's own (a random name, free ports), torn down with its data."""

    def __init__(self, **env: str) -> None:
        # CLUSTER_PGBOUNCER=1: the same tests with PgBouncer in transaction mode between
        # the app hosts and PostgreSQL.
        super().__init__(name=f"aistest-{uuid.uuid4().hex[:6]}", port=free_port_range(len(FORWARDS)),
                         web_workers=1, env={**TEST_ENV, **env}, pgbouncer=os.environ.get("CLUSTER_PGBOUNCER") == "1")

    def __enter__(self) -> ClusterUnderTest:
        try:
            self.up()
            self.spawn("ai-stub", self.inside("data", PYTHON, "-m", "tests.cluster", "ai-stub", str(AI_STUB_PORT), "1.0"))
        except BaseException:
            self.purge()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()
        self.purge()

    def purge(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.postgres_directory()[0], ignore_errors=True)

    def django(self, code: str, *, host: str = "app1") -> Any:
        """Run `code` with Django set up on `host` (as its processes are), and return the
        JSON it printed last."""
        done = subprocess.run(self.inside(host, PYTHON, "manage.py", "shell", "-c", code), cwd=ROOT,
                              env=self.app_env(host), capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    def make_users(self, count: int, *, tag: str = "") -> dict[str, Any]:
        """`count` users, a token each, and a channel owned by the first that all read."""
        tag = tag or uuid.uuid4().hex[:6]
        return self.django(f"""
import json
from django.contrib.auth import get_user_model
from knox.models import AuthToken
from contents.services import channel_add_members, channel_create
users = [get_user_model().objects.create_user(username=f"c{tag}-{{i}}", password="pw") for i in range({count})]
channel = channel_create(owner=users[0], name="cluster {tag}")
channel_add_members(channel=channel, user_ids=[u.id for u in users[1:]])
print(json.dumps({{"channel_id": str(channel.id), "users": [str(u.id) for u in users],
                  "tokens": [AuthToken.objects.create(user=u)[1] for u in users]}}))
""")

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        """A query on the data host's PostgreSQL, through its forwarded port."""
        import psycopg

        with psycopg.connect(self.database_url(from_root=True), autocommit=True, connect_timeout=5) as conn:
            return conn.execute(query, params).fetchall()

    def stream_head(self, channel_id: str) -> int:
        rows = self.sql("SELECT last_seq FROM realtime_stream WHERE name = %s", f"channel:{channel_id}")
        return int(rows[0][0]) if rows else 0

    def outbox(self, channel_id: str) -> list[tuple[int, str | None, int | None]]:
        """(seq, content id, version) of the channel's events, in order."""
        rows = self.sql("SELECT seq, payload->>'content_id', (payload->>'version')::int FROM realtime_event "
                        "WHERE stream = %s ORDER BY seq", f"channel:{channel_id}")
        return [(int(seq), content_id, version) for seq, content_id, version in rows]

    def lb_changes(self) -> list[str]:
        """The load balancer's log of app hosts going down and up, so far."""
        lines = (self.dir / "lb.log").read_text(errors="replace").splitlines()
        return [line.split(", reason")[0].split(". ")[0] for line in lines
                if line.startswith("Server api/") and (" is DOWN" in line or " is UP" in line)]

    def streams_at(self, backends: tuple[str, ...] = ("streams", "websockets")) -> dict[str, int]:
        """Streams the load balancer holds open to each app host now: SSE (its `streams`
        backend, on granian) and WebSocket (`websockets`, on the host's WebSocket server)."""
        held = dict.fromkeys(APPS, 0)
        for row in self.lb_stats():
            if row["pxname"] in backends and row["svname"] in APPS:
                held[row["svname"]] += int(row["scur"])
        return held

    def log_lines(self, host: str, containing: str) -> list[str]:
        """The lines of a host's log (its stack's processes) that contain `containing`."""
        path = self.dir / f"{host}.log"
        return [line for line in path.read_text(errors="replace").splitlines() if containing in line] if path.exists() else []

    def connections_to(self, host: str, port: int) -> int:
        """Established TCP connections to `port` in `host`'s namespace, as its kernel counts them."""
        listed = subprocess.run(self.inside(host, "ss", "-Htn", "state", "established", f"( sport = :{port} )"),
                                capture_output=True, text=True, check=True).stdout
        return len(listed.splitlines())

    def open_streams_metric(self, host: str) -> float:
        """aistatus_open_streams summed over its labels, as the host's /metrics says."""
        import httpx

        text = httpx.get(f"http://127.0.0.1:{self.forwarded(host)}/metrics", timeout=10,
                         headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("aistatus_open_streams"))


class Fleet:
    """The clients' process, seen from the test: `clients` are (kind, token) pairs, each
    a subscriber of `channel_id` through the load balancer."""

    def __init__(self, cluster: Cluster, *, channel_id: str, clients: list[tuple[str, str]],
                 ramp_seconds: float = 0.005) -> None:
        config = {"port": cluster.port, "channel_id": channel_id, "ramp_seconds": ramp_seconds,
                  "clients": [{"kind": kind, "token": token} for kind, token in clients]}
        self.log_path = cluster.dir / f"fleet-{uuid.uuid4().hex[:6]}.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [PYTHON, "-m", "tests.cluster", "clients", json.dumps(config)], cwd=ROOT,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
            )
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
            return self.answers.get(timeout=timeout + 30)
        except queue.Empty:
            raise RuntimeError(f"the clients did not answer {cmd}; see {self.log_path}") from None

    def wait_live(self, timeout: float = 60) -> int:
        return int(self.ask("wait_live", timeout=timeout)["live"])

    def wait_current(self, last: int, timeout: float = 60) -> dict[str, Any]:
        """Until every client holds event `last`: {"current": how many, "t": when}."""
        return self.ask("wait_current", last=last, timeout=timeout)

    def poll(self, token: str, *, pollers: int, interval: float) -> None:
        """Polling load until poll_stop: `pollers` clients asking for the channel's status
        (with If-None-Match) every `interval` seconds each, through the load balancer."""
        self.ask("poll", token=token, pollers=pollers, interval=interval)

    def poll_stop(self) -> dict[str, int]:
        """How the polls were answered: status code (or exception name) -> count."""
        return dict(self.ask("poll_stop")["answers"])

    def report(self) -> list[dict[str, Any]]:
        return list(self.ask("report", timeout=30)["subscribers"])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.stdin.close()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def received_wrongly(report: list[dict[str, Any]], outbox: list[tuple[int, str | None, int | None]]) -> list[str]:
    """Each client that did not get exactly the outbox's events, once each and in order
    (with what it got instead); empty when all did."""
    expected = [list(row) for row in outbox]
    wrong = []
    for client in report:
        got = [[seq, content_id, version] for seq, content_id, version, _at in client["events"]]
        if got != expected or client["resyncs"]:
            seqs = [row[0] for row in got]
            duplicated = sorted(seq for seq, n in Counter(seqs).items() if n > 1)
            missing = sorted(set(range(1, len(expected) + 1)) - set(seqs))
            wrong.append(f"{client['kind']} #{client['index']}: missing {missing[:10]}, twice {duplicated[:10]}, "
                         f"resyncs {client['resyncs']}, in order {seqs == sorted(seqs)}, errors {client['errors']}")
    return wrong


# --- the clients' process ----------------------------------------------------------


async def _run_clients(config: dict[str, Any]) -> None:
    import ssl

    import httpx

    from bench.reconnect_storm import Subscriber, answer, log_progress, quiet_http_logs, raise_fd_limit

    quiet_http_logs()
    raise_fd_limit()
    tls = ssl.create_default_context()
    https = [httpx.AsyncClient(verify=tls, timeout=10) for _ in config["clients"]]
    subscribers = [
        Subscriber(i, client["kind"], config["port"], {"channel_id": config["channel_id"], "token": client["token"]},
                   https[i])
        for i, client in enumerate(config["clients"])
    ]
    pollers: list[asyncio.Task[None]] = []
    polled: Counter[str] = Counter()
    tasks = []
    try:
        for subscriber in subscribers:
            tasks.append(asyncio.create_task(subscriber.run()))
            await asyncio.sleep(config["ramp_seconds"])
        tasks.append(asyncio.create_task(log_progress(subscribers)))
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                return
            command = json.loads(line)
            deadline = time.monotonic() + command.get("timeout", 60)
            if command["cmd"] == "wait_live":
                while sum(s.live for s in subscribers) < len(subscribers) and time.monotonic() < deadline:  # noqa: ASYNC110 - a sum, polled
                    await asyncio.sleep(0.05)
                answer({"live": sum(s.live for s in subscribers), "t": time.time()})
            elif command["cmd"] == "wait_current":
                target = command["last"]
                while sum(s.last >= target for s in subscribers) < len(subscribers) and time.monotonic() < deadline:  # noqa: ASYNC110 - a sum, polled
                    await asyncio.sleep(0.01)
                answer({"current": sum(s.last >= target for s in subscribers), "t": time.time(),
                        "behind": [s.index for s in subscribers if s.last < target][:20]})
            elif command["cmd"] == "poll":
                # Polling load: each poller asks for the channel's status as a client of
                # the polling API does, with If-None-Match, and counts every answer.
                polled.clear()
                pollers = [asyncio.create_task(_poll(config, command, polled)) for _ in range(command["pollers"])]
                answer({"polling": len(pollers)})
            elif command["cmd"] == "poll_stop":
                for poller in pollers:
                    poller.cancel()
                await asyncio.gather(*pollers, return_exceptions=True)
                answer({"answers": dict(polled)})
            elif command["cmd"] == "report":
                answer({"subscribers": [s.report() for s in subscribers]})
    finally:
        for task in [*tasks, *pollers]:
            task.cancel()
        await asyncio.gather(*tasks, *pollers, return_exceptions=True)
        await asyncio.gather(*(http.aclose() for http in https), return_exceptions=True)


async def _poll(config: dict[str, Any], command: dict[str, Any], polled: Counter[str]) -> None:
    import httpx

    url = f"http://127.0.0.1:{config['port']}/api/contents/{config['channel_id']}/status"
    etag = ""
    async with httpx.AsyncClient(timeout=10, headers={"Authorization": f"Bearer {command['token']}"}) as http:
        while True:
            try:
                response = await http.get(url, headers={"If-None-Match": etag} if etag else {})
                polled[str(response.status_code)] += 1
                etag = response.headers.get("ETag", etag)
            except httpx.HTTPError as error:
                polled[type(error).__name__] += 1
            await asyncio.sleep(command["interval"])


def _ai_stub(port: int, delay: float) -> None:
    """An OpenAI-compatible chat-completions server answering after `delay` seconds."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            time.sleep(delay)
            system = body["messages"][0]["content"]
            content = ('[{"question": "Where do tide pools form?", "answer": "On rocky shores."}]'
                       if "question and answer" in system else "Tide pools are rocky pools full of life.")
            payload = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload.encode())

    http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()  # noqa: S104 - in the data host's namespace


if __name__ == "__main__":
    if sys.argv[1] == "clients":
        sys.path.insert(0, str(ROOT))
        asyncio.run(_run_clients(json.loads(sys.argv[2])))
    elif sys.argv[1] == "ai-stub":
        _ai_stub(int(sys.argv[2]), float(sys.argv[3]))
