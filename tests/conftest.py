"""The suite's fixtures; helpers to import are in tests/helpers.py. The suite runs
against the real PostgreSQL and Redis on
127.0.0.1 (Redis database 15 by default, see config/settings_test.py); if either is
down, tests error out loudly rather than skip."""

from collections.abc import Callable, Iterator

import pytest
import redis
from django.conf import settings
from rest_framework.test import APIClient

from tests.helpers import LocalHTTPServer, api_client_for, make_user


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


@pytest.fixture(autouse=True)
def no_bench_in_the_suites_process() -> Iterator[None]:
    """Importing the bench package raises the per-user stream bound and lifts the
    per-client one in the process's environment (bench/__init__.py): every server a later
    test starts would inherit it (the cluster test's hosts once let a user past the bound
    so). A test that imports it here fails; its client subprocesses may."""
    import sys

    yield
    assert "bench" not in sys.modules, "a test imported the bench package into the suite's process"


@pytest.fixture
def user(db):
    return make_user("alice")


@pytest.fixture
def client_for() -> Callable[..., APIClient]:
    return api_client_for


@pytest.fixture
def http_server() -> Iterator[LocalHTTPServer]:
    server = LocalHTTPServer()
    yield server
    server.close()


@pytest.fixture
def allow_loopback_fetch(settings):
    """Tests serve pages on 127.0.0.1, which production refuses to fetch."""
    settings.FETCH_ALLOW_LOOPBACK = True
    return settings


@pytest.fixture
def browser_page(monkeypatch):
    """A page in Debian's headless chromium, its console messages collected."""
    from playwright.sync_api import sync_playwright

    from tests.chromium import CHROMIUM, CHROMIUM_ARGS, record_console

    # Playwright's sync API keeps an event loop running in this thread; the test's own
    # ORM calls are still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        # A harness for client code (the seeds' hooks injected as an inline script, waited on
        # with wait_for_function, which evaluates strings): the site's Content-Security-Policy
        # would refuse both. The site's own pages run under it in test_browser_pages.py.
        page = browser.new_page(bypass_csp=True)
        record_console(page)
        yield page
        browser.close()


@pytest.fixture
def production_daphne():
    """daphne with every realtime default as `make run` ships it (the 10 s heartbeat)."""
    from tests.live import Daphne

    daphne = Daphne(production_timing=True)
    yield daphne
    daphne.close()
