"""Helpers the test modules share: users and API clients, a burst RQ worker, a local
HTTP server, threads started together, processes waited for and killed. Test modules
import them from here (or from factories, live, stream_clients, chromium), never from
conftest.py, which holds only fixtures, nor from another test module
(tests/test_architecture.py checks)."""

import contextlib
import http.server
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import django_rq
from django.db import connection
from knox.models import AuthToken
from rest_framework.test import APIClient

from core.worker import DjangoWorker


def make_user(username: str | None = None, **extra: Any) -> Any:
    from django.contrib.auth import get_user_model

    username = username or f"user-{uuid.uuid4().hex[:8]}"
    return get_user_model().objects.create_user(username=username, password="pw-" + username, **extra)


def api_client_for(user: Any) -> APIClient:
    """A client that authenticates exactly as the seeds' fetch code does: a Bearer token."""
    _, token = AuthToken.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def run_burst_worker() -> None:
    """A real forking RQ worker that drains the queue and exits."""
    queue = django_rq.get_queue("default")
    DjangoWorker([queue], connection=queue.connection).work(burst=True, logging_level="WARNING")


def run_concurrently(tasks: list[Callable[[], Any]], workers: int) -> None:
    """Run the tasks in `workers` threads, started together when there are no more tasks
    than threads; each thread's database connection closed after its task."""
    barrier = threading.Barrier(min(workers, len(tasks)))

    def run(task: Callable[[], Any]) -> None:
        try:
            if len(tasks) <= workers:
                barrier.wait()
            task()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(run, task) for task in tasks]:
            future.result()


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> None:
    """Return once `predicate()` holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants: RQ's work horse runs in its own process group."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def kill_tree(pid: int) -> None:
    for member in process_tree(pid):
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.kill(member, signal.SIGKILL)


class LocalHTTPServer:
    """A small HTTP server on 127.0.0.1 whose routes a test sets:
    path -> (status, headers, body) or a callable(handler)."""

    def __init__(self) -> None:
        self.routes: dict[str, Any] = {}
        self.requests: list[str] = []
        routes, requests = self.routes, self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                requests.append(self.path)
                route = routes.get(self.path.split("?", 1)[0])
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if callable(route):
                    route(self)
                    return
                status, headers, body = route
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = _answer
            do_POST = _answer

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class MidWindowClock:
    """The throttle's clock, held in the middle of a failure window (15 minutes) and of
    a success window (a minute): the counts live in fixed windows, and a test that
    crossed an edge (a busy machine takes seconds for 30 logins) saw its counts start
    again. Only the window arithmetic reads it; Redis expiries run on real time."""

    def __init__(self) -> None:
        self.now = (time.time() // 900) * 900 + 450 + 0.5

    def time(self) -> float:
        return self.now
