"""A real daphne process serving the test database, for SSE and WebSocket tests."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from django.conf import settings
from django.db import connection
from websockets.typing import Origin

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment a subprocess needs to use the test settings, database and Redis."""
    db = connection.settings_dict
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": settings.SETTINGS_MODULE,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        **extra,
    }


def run_burst_worker_process() -> None:
    """A real `rqworker --burst` in its own process, for tests whose own thread runs an
    event loop (Playwright), where Django's connection handling is context-local."""
    subprocess.run(
        [sys.executable, "manage.py", "rqworker", "default", "--burst", "--worker-class", "core.worker.DjangoWorker"],
        cwd=ROOT, env=subprocess_env(), check=True, capture_output=True, timeout=120,
    )


class LiveServer:
    """A server process of the test's own on 127.0.0.1: its addresses, its log (a file,
    not a pipe: a pipe nobody reads blocks the server once its log fills it) and the
    wait until it answers /healthz."""

    port: int
    log_path: Path
    process: subprocess.Popen[bytes]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    @property
    def origin(self) -> Origin:
        return Origin(f"http://127.0.0.1:{self.port}")

    def output(self) -> str:
        """Everything the server has logged so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM; SIGKILL if it has not exited within 10 s."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def wait_until_healthy(self, *, within: float, what: str) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url("/healthz"), timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{what} did not start: " + self.output()[-3000:])


class Daphne(LiveServer):
    """daphne on a free port (or `port`, to restart one in place). Most tests use a 1 s
    heartbeat to stay quick; `production_timing=True` keeps every realtime default
    as `make run` ships it, for the tests that must meet real timeouts."""

    def __init__(self, *, port: int | None = None, production_timing: bool = False, **extra_env: str) -> None:
        self.port = port or free_port()
        self.production_timing = production_timing
        self.extra_env = extra_env
        self.log_path = Path(tempfile.mkstemp(prefix="daphne-", suffix=".log")[1])
        self.start()

    def start(self) -> None:
        timing = {} if self.production_timing else {"REALTIME_HEARTBEAT_SECONDS": "1"}
        env = subprocess_env(**timing, **self.extra_env)
        if self.production_timing:
            env.pop("REALTIME_HEARTBEAT_SECONDS", None)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                # Daphne's command line as `make run`'s dev mode runs it (config/daphne_server.py).
                [sys.executable, "-m", "config.daphne_server", "-b", "127.0.0.1", "-p", str(self.port), "config.asgi:application"],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log,
            )
        self.wait_until_healthy(within=30, what="daphne")

    def close(self) -> None:
        self.stop()
        self.log_path.unlink(missing_ok=True)

    def restart(self, *, down_for: float = 0.0) -> None:
        """Stop daphne (its clients see the connection end), wait, start it on the same port."""
        self.stop()
        time.sleep(down_for)
        self.start()


class Granian(LiveServer):
    """The production server of `make run`, as scripts/run_stack.sh starts it (through
    config.web_server, with its per-connection bounds), one worker, on the test
    database; `extra_env` changes settings for it alone."""

    def __init__(self, **extra_env: str) -> None:
        from config.web_server import granian_command

        self.port = free_port()
        self.log_path = Path(tempfile.mkstemp(prefix="granian-", suffix=".log")[1])
        env = subprocess_env(DEBUG="0", **extra_env)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                granian_command(host="127.0.0.1", port=self.port, workers=1, extra=["--no-access-log"], environ=env),
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        self.wait_until_healthy(within=60, what="granian")

    def worker_pid(self) -> int:
        """The worker process that serves the requests (granian's own child)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        assert len(children) == 1, children
        return int(children[0])

    def close(self) -> None:
        self.stop()
        self.log_path.unlink(missing_ok=True)


def rss_bytes(pid: int) -> int:
    """A process's resident memory now, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


class PrivateRedis:
    """A redis-server of the test's own on a free port, which it may stop and start
    again (never the machine's Redis). Without persistence, as a restart that loses
    everything is the harder case: queues, group memberships and tickets are gone."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="private-redis-"))
        self.process: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Stack(LiveServer):
    """`scripts/run_stack.sh` as `make run` starts it (its production mode: granian with
    a worker per core, the RQ worker, RQ cron, each supervised), on a free port, with
    the test database and the given Redis."""

    def __init__(self, *, redis_url: str, **extra_env: str) -> None:
        self.port = free_port()
        self.log_path = Path(tempfile.mkstemp(prefix="stack-", suffix=".log")[1])
        # Stopped at once unless a test asks for the drain (scripts/run_stack.sh).
        env = subprocess_env(PORT=str(self.port), REDIS_URL=redis_url, **{"WEB_DRAIN_SECONDS": "0", **extra_env})
        env.pop("REALTIME_HEARTBEAT_SECONDS", None)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                ["bash", "scripts/run_stack.sh"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_until_healthy(within=60, what="the stack")

    def stop(self) -> None:
        """SIGTERM, as Ctrl-C would; then make sure nothing of it is left."""
        self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
