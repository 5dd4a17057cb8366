"""Safe by default: config.settings is production unless the environment asks for
development; production refuses to start without a SECRET_KEY and passes
`manage.py check --deploy`; the suite's own settings are a module of their own that
nothing switches on by sniffing the environment. And CORS: explicitly allowed
origins, credentials for those only."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient

ROOT = Path(__file__).resolve().parent.parent

# What a deployment's environment holds besides the settings' own variables.
_SETTINGS_VARIABLES = {
    "DJANGO_ENV", "DEBUG", "SECRET_KEY", "REDIS_URL", "MEDIA_ROOT", "SERVE_MEDIA", "CORS_ALLOWED_ORIGINS",
    "CSRF_TRUSTED_ORIGINS", "PROMETHEUS_MULTIPROC_DIR", "SECURE_SSL_REDIRECT", "SECURE_COOKIES", "SECURE_HSTS_SECONDS",
    "TRUSTED_PROXY_COUNT",
}


def deployment_env(**variables: str) -> dict[str, str]:
    """This process's environment without anything the suite set for its own settings,
    plus `variables`: what a deployment that sets only those would have."""
    env = {k: v for k, v in os.environ.items() if k not in _SETTINGS_VARIABLES}
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    return {**env, **variables}


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)


def settings_seen(env: dict[str, str], *names: str) -> dict:
    """The named settings as a process with `env` loads them."""
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{n: str(getattr(settings, n, '<unset>')) for n in {list(names)!r}}}))"
    )
    result = run([sys.executable, "-c", code], env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_check_deploy_is_clean_under_production_settings():
    """What a deployment gets when it sets only a SECRET_KEY (and its services)."""
    result = run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        deployment_env(SECRET_KEY=secrets.token_urlsafe(50)),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    result = run([sys.executable, "manage.py", "check"], deployment_env())
    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY is not set" in result.stderr


def test_debug_is_off_unless_development_is_asked_for():
    key = secrets.token_urlsafe(50)
    assert settings_seen(deployment_env(SECRET_KEY=key), "DEBUG", "DJANGO_ENV") == {"DEBUG": "False", "DJANGO_ENV": "production"}
    # Development is asked for by name, or by DEBUG=1 alone; it runs without a key.
    assert settings_seen(deployment_env(DJANGO_ENV="development"), "DEBUG")["DEBUG"] == "True"
    assert settings_seen(deployment_env(DEBUG="1"), "DJANGO_ENV")["DJANGO_ENV"] == "development"
    # Production that asks for the debug page is refused outright.
    refused = run([sys.executable, "manage.py", "check"], deployment_env(DJANGO_ENV="production", DEBUG="1", SECRET_KEY=key))
    assert refused.returncode != 0 and "DEBUG is on with DJANGO_ENV=production" in refused.stderr


def test_a_process_started_from_a_test_run_gets_no_test_switches():
    """A manage.py run from inside a pytest process (an operator's harness, a deploy
    check) once got the test password hasher, Redis database 15 and the test media
    folder, keyed on PYTEST_VERSION in the environment."""
    seen = settings_seen(
        deployment_env(SECRET_KEY=secrets.token_urlsafe(50), PYTEST_VERSION="8.4.0"),
        "PASSWORD_HASHERS", "REDIS_URL", "MEDIA_ROOT", "TESTING",
    )
    assert "MD5" not in seen["PASSWORD_HASHERS"]
    assert seen["REDIS_URL"] == "redis://127.0.0.1:6379/0"
    assert seen["MEDIA_ROOT"] == str(ROOT / "media")
    assert seen["TESTING"] == "<unset>"


def test_the_suite_runs_its_own_settings_module():
    assert django_settings.SETTINGS_MODULE == "config.settings_test"
    assert django_settings.DJANGO_ENV == "production" and not django_settings.DEBUG


def test_cors_origins_come_from_the_environment():
    key = secrets.token_urlsafe(50)
    assert settings_seen(deployment_env(SECRET_KEY=key), "CORS_ALLOWED_ORIGINS")["CORS_ALLOWED_ORIGINS"] == "[]"
    listed = settings_seen(
        deployment_env(SECRET_KEY=key, CORS_ALLOWED_ORIGINS="https://app.example.com, https://admin.example.com"),
        "CORS_ALLOWED_ORIGINS", "CORS_ALLOW_CREDENTIALS",
    )
    assert listed == {
        "CORS_ALLOWED_ORIGINS": "['https://app.example.com', 'https://admin.example.com']", "CORS_ALLOW_CREDENTIALS": "True",
    }
    # `make run` (development): the seed frontend's dev server.
    dev = settings_seen(deployment_env(DJANGO_ENV="development"), "CORS_ALLOWED_ORIGINS")
    assert "http://localhost:3000" in dev["CORS_ALLOWED_ORIGINS"]


SEED_ORIGIN = "http://localhost:3000"


@pytest.fixture
def seed_origin_allowed(settings):
    settings.CORS_ALLOWED_ORIGINS = [SEED_ORIGIN]
    return settings


@pytest.mark.django_db
def test_an_allowed_origin_may_call_the_api_with_credentials(seed_origin_allowed):
    client = APIClient()
    preflight = client.options(
        "/v1/auth/me", HTTP_ORIGIN=SEED_ORIGIN, HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, idempotency-key",
    )
    assert preflight.status_code == 200
    assert preflight["Access-Control-Allow-Origin"] == SEED_ORIGIN
    assert preflight["Access-Control-Allow-Credentials"] == "true"
    assert {"authorization", "idempotency-key"} <= {h.strip() for h in preflight["Access-Control-Allow-Headers"].split(",")}

    answer = client.get("/v1/auth/me", HTTP_ORIGIN=SEED_ORIGIN)
    assert answer.status_code == 401  # no credentials sent here; the CORS headers are what matter
    assert answer["Access-Control-Allow-Origin"] == SEED_ORIGIN
    assert answer["Access-Control-Allow-Credentials"] == "true"
    assert "X-Poll-Interval" in answer["Access-Control-Expose-Headers"]


@pytest.mark.django_db
@pytest.mark.parametrize("origin", ["https://evil.example", "http://localhost:3001", "https://localhost:3000", "null"])
def test_any_other_origin_gets_no_cors_headers(seed_origin_allowed, origin):
    client = APIClient()
    preflight = client.options("/v1/auth/me", HTTP_ORIGIN=origin, HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET")
    answer = client.get("/v1/auth/me", HTTP_ORIGIN=origin)
    for response in (preflight, answer):
        assert "Access-Control-Allow-Origin" not in response
        assert "Access-Control-Allow-Credentials" not in response


CROSS_ORIGIN_CALLS = """async ({api, username, password, channelId}) => {
    // What a frontend served from another origin does: log in, call the API with the
    // token, open the channel's EventSource with a ticket, credentials included throughout.
    const out = {};
    try {
        const login = await fetch(`${api}/v1/auth/token`, {method: 'POST', credentials: 'include',
            headers: {'Content-Type': 'application/json'}, body: JSON.stringify({username, password})});
        out.login = login.status;
        const token = (await login.json()).token;
        const auth = {Authorization: `Bearer ${token}`};
        const me = await fetch(`${api}/v1/auth/me`, {headers: auth, credentials: 'include'});
        out.me = (await me.json()).username;
        const status = await fetch(`${api}/api/contents/${channelId}/status`, {headers: auth, credentials: 'include'});
        out.pollInterval = status.headers.get('X-Poll-Interval');
        const ticket = (await (await fetch(`${api}/v1/realtime/tickets`, {method: 'POST', headers: auth, credentials: 'include'})).json()).ticket;
        out.sse = await new Promise((resolve) => {
            const source = new EventSource(`${api}/api/contents/${channelId}/events?ticket=${ticket}`, {withCredentials: true});
            source.onopen = () => { source.close(); resolve('open'); };
            source.onerror = () => { source.close(); resolve('error'); };
        });
    } catch (error) {
        out.error = String(error);
    }
    return out;
}"""


@pytest.fixture
def frontend_channel(transactional_db):
    """Made before the browser starts: with Playwright's event loop running in this
    thread, Django would take a connection of the test's own from the pool (one an
    earlier test may have killed)."""
    from contents.services import channel_create
    from tests.helpers import make_user

    return channel_create(owner=make_user("frontend"), name="cors")


def test_a_frontend_on_an_allowed_origin_works_in_a_browser_and_others_are_blocked(frontend_channel, http_server, browser_page):
    from tests.live import Daphne

    channel = frontend_channel
    page_port = http_server.server.server_address[1]
    http_server.routes["/"] = (200, {"Content-Type": "text/html"}, b"<!doctype html><title>frontend</title>")
    # The seed frontend's dev server is http://localhost:3000; this one is on a free port.
    allowed = f"http://localhost:{page_port}"
    server = Daphne(CORS_ALLOWED_ORIGINS=allowed)
    try:
        arguments = {"api": server.origin, "username": "frontend", "password": "pw-frontend", "channelId": str(channel.id)}
        browser_page.goto(allowed + "/")
        from_allowed = browser_page.evaluate(CROSS_ORIGIN_CALLS, arguments)
        # The same page from another origin (127.0.0.1 is not localhost to CORS).
        browser_page.goto(f"http://127.0.0.1:{page_port}/")
        from_other = browser_page.evaluate(CROSS_ORIGIN_CALLS, arguments)
    finally:
        server.stop()
    assert from_allowed == {"login": 201, "me": "frontend", "pollInterval": "30", "sse": "open"}, from_allowed
    assert from_other == {"error": "TypeError: Failed to fetch"}, from_other
