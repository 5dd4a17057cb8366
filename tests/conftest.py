"""Shared test helpers. The suite runs against the real PostgreSQL and Redis on
127.0.0.1 (Redis database 15 by default, see config/settings_test.py); if either is
down, tests error out loudly rather than skip."""

import http.server
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import django_rq
import pytest
import redis
from django.conf import settings
from knox.models import AuthToken
from rest_framework.test import APIClient

from core.worker import DjangoWorker


@pytest.fixture(autouse=True, scope="session")
def fresh_media_root() -> None:
    """Uploaded and generated files of earlier runs do not pile up."""
    import shutil

    assert getattr(settings, "TESTING", False) and "test" in str(settings.MEDIA_ROOT)
    shutil.rmtree(settings.MEDIA_ROOT, ignore_errors=True)


@pytest.fixture(autouse=True)
def clean_redis() -> Iterator[None]:
    assert getattr(settings, "TESTING", False), "tests must run with the test settings (config.settings_test)"
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield
    client.close()


def make_user(username: str | None = None, **extra: Any):  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model

    username = username or f"user-{uuid.uuid4().hex[:8]}"
    return get_user_model().objects.create_user(username=username, password="pw-" + username, **extra)


def api_client_for(user) -> APIClient:  # type: ignore[no-untyped-def]
    """A client that authenticates exactly as the seeds' fetch code does: a Bearer token."""
    _, token = AuthToken.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def user(db):  # type: ignore[no-untyped-def]
    return make_user("alice")


@pytest.fixture
def client_for() -> Callable[..., APIClient]:
    return api_client_for


def run_burst_worker() -> None:
    """A real forking RQ worker that drains the queue and exits."""
    queue = django_rq.get_queue("default")
    DjangoWorker([queue], connection=queue.connection).work(burst=True, logging_level="WARNING")


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


@pytest.fixture
def http_server() -> Iterator[LocalHTTPServer]:
    server = LocalHTTPServer()
    yield server
    server.close()


@pytest.fixture
def allow_loopback_fetch(settings):  # type: ignore[no-untyped-def]
    """Tests serve pages on 127.0.0.1, which production refuses to fetch."""
    settings.FETCH_ALLOW_LOOPBACK = True
    return settings


@pytest.fixture
def browser_page(monkeypatch):  # type: ignore[no-untyped-def]
    """A page in Debian's headless chromium, its console messages collected."""
    from playwright.sync_api import sync_playwright

    from tests.chromium import CHROMIUM, CHROMIUM_ARGS

    # Playwright's sync API keeps an event loop running in this thread; the test's own
    # ORM calls are still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.console_messages = []
        page.on("console", lambda message: page.console_messages.append(message.text))
        yield page
        browser.close()


@pytest.fixture
def production_daphne():  # type: ignore[no-untyped-def]
    """daphne with every realtime default as `make run` ships it (the 10 s heartbeat)."""
    from tests.live import Daphne

    daphne = Daphne(production_timing=True)
    yield daphne
    daphne.close()
