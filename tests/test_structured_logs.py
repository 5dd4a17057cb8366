"""Structured logs, read from a real stack's log (scripts/run_stack.sh: granian, the RQ
worker, the cron) in its production format, one JSON object a line: a request's id comes
back in X-Request-ID and names its access line, the lines its job writes in the worker,
and the events the request and the job publish; a stream logs its opening and its end
under the id of its handshake. Nothing secret is written."""

import functools
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.conf import settings
from knox.models import AuthToken
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from contents.models import Content
from contents.services import channel_create
from realtime.models import Event
from tests.helpers import api_client_for, make_user
from tests.live import ROOT, Stack
from tests.stream_clients import ticket, wait_for

FINISHED = ("completed", "failed")


def log_lines(stack: Stack) -> list[dict[str, Any]]:
    """The stack's JSON log lines (granian's and run_stack.sh's own lines are text)."""
    return [json.loads(line) for line in stack.output().splitlines() if line.startswith("{")]


def access_lines(stack: Stack, request_id: str) -> list[dict[str, Any]]:
    return [line for line in log_lines(stack) if line["logger"] == "access" and line["request_id"] == request_id]


@pytest.fixture
def stack(transactional_db) -> Iterator[Stack]:
    running = Stack(redis_url=settings.REDIS_URL, WEB_WORKERS="1", LOG_FORMAT="json", AI_PROVIDER="embedded")
    yield running
    running.stop()
    running.log_path.unlink(missing_ok=True)


@pytest.fixture
def owner_token() -> tuple[Any, str]:
    owner = make_user("logged")
    _, token = AuthToken.objects.create(user=owner)
    return owner, token


def submit(stack: Stack, token: str, channel_id: str, request_id: bytes | None = None) -> httpx.Response:
    """POST /api/contents, with an X-Request-ID of these bytes, if any."""
    headers = {b"Authorization": f"Bearer {token}".encode()}
    if request_id is not None:
        headers[b"X-Request-ID"] = request_id
    return httpx.post(
        stack.url("/api/contents"), timeout=10, headers=headers,
        json={"channel_id": channel_id, "title": "Logs", "description": "One line per request. " * 20},
    )


def finished(content_id: str) -> bool:
    return Content.objects.filter(id=content_id, processing_status__in=FINISHED).exists()


def test_a_request_id_follows_a_content_from_its_request_to_its_job_and_its_events(stack, owner_token):
    owner, token = owner_token
    channel = channel_create(owner=owner, name="traced")
    chosen = f"trace-{uuid.uuid4().hex[:12]}"

    answer = submit(stack, token, str(channel.id), chosen.encode())
    assert answer.status_code == 201, answer.text
    assert answer.headers["X-Request-ID"] == chosen
    content_id = answer.json()["id"]
    assert wait_for(lambda: finished(content_id), timeout=60), stack.output()[-3000:]
    # The worker's last line of the job ("Job OK") is written after the content's last move.
    assert wait_for(lambda: any(line.get("job_id") for line in log_lines(stack) if line["request_id"] == chosen), timeout=10)

    # Its access line: one, with what an operator looks for.
    [access] = access_lines(stack, chosen)
    assert access["route"] == "content-create" and access["method"] == "POST" and access["status"] == 201
    assert isinstance(access["latency_ms"], int | float) and access["latency_ms"] > 0
    assert access["user_id"] == str(owner.pk) and access["client"] == "127.0.0.1"
    assert access["level"] == "INFO" and access["time"]

    # Its job's lines in the worker: the job that ran the content, under the same id.
    job_lines = [line for line in log_lines(stack) if line["request_id"] == chosen and line["logger"].startswith("rq.")]
    assert job_lines, stack.output()[-3000:]
    run_ids = {line["job_id"] for line in job_lines}
    assert len(run_ids) == 1 and run_ids.pop().startswith("content-")
    assert any("Job OK" in line["message"] for line in job_lines)

    # The events: published by the request (the content created) and by the job.
    events = list(Event.objects.filter(stream=f"channel:{channel.id}", payload__content_id=content_id).order_by("seq"))
    assert len(events) >= 3, events
    assert {event.request_id for event in events} == {chosen}
    assert all("request_id" not in event.payload for event in events), "the payload is the API's contract"

    # No credential anywhere in the log.
    assert token not in stack.output()


def test_a_request_without_an_id_or_with_an_unsafe_one_gets_a_new_one_and_so_does_one_refused_early(stack, owner_token):
    owner, token = owner_token
    channel = channel_create(owner=owner, name="untraced")
    unsafe = ['x" "route": "forged', "a" * 129, "ünïcode", "semi;colon"]

    answers = [submit(stack, token, str(channel.id))]
    answers += [submit(stack, token, str(channel.id), value.encode()) for value in unsafe]

    given = [answer.headers["X-Request-ID"] for answer in answers]
    assert all(answer.status_code == 201 for answer in answers), [answer.text for answer in answers]
    assert all(len(value) == 32 and int(value, 16) >= 0 for value in given), given
    assert len(set(given)) == len(given)
    assert wait_for(lambda: all(len(access_lines(stack, value)) == 1 for value in given), timeout=10)
    output = stack.output()
    assert not any(value in output or json.dumps(value)[1:-1] in output for value in unsafe)
    for answer, value in zip(answers, given, strict=True):
        content_id = answer.json()["id"]
        assert wait_for(functools.partial(finished, content_id), timeout=60)
        assert set(Event.objects.filter(payload__content_id=content_id).values_list("request_id", flat=True)) == {value}

    # An answer given before Django sees the request (a body over its limit) has its id and its line too.
    too_large = httpx.post(
        stack.url("/api/contents"), content=b"x" * 2_000_000, timeout=10,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", "X-Request-ID": "big-1"},
    )
    assert too_large.status_code == 413 and too_large.headers["X-Request-ID"] == "big-1"
    assert wait_for(lambda: bool(access_lines(stack, "big-1")), timeout=10)
    [refused] = access_lines(stack, "big-1")
    assert (refused["route"], refused["status"], refused["user_id"]) == ("content-create", 413, None)


def test_a_stream_logs_its_handshake_and_its_end_under_one_id_without_its_ticket(stack, owner_token):
    owner, token = owner_token
    api = api_client_for(owner)
    channel = channel_create(owner=owner, name="streamed")

    # SSE, opened with a single-use ticket in its URL.
    sse_ticket = ticket(api)
    url = stack.url(f"/api/contents/{channel.id}/events?ticket={sse_ticket}")
    with httpx.stream("GET", url, headers={"X-Request-ID": "sse-1"}, timeout=10) as sse:
        assert sse.status_code == 200 and sse.headers["X-Request-ID"] == "sse-1"
        next(sse.iter_lines())
    # Refused (a malformed Last-Event-ID): Django logs a warning, given the request itself.
    refused_ticket = ticket(api)
    refused_url = url.replace(sse_ticket, refused_ticket) + "&last_event_id=x"
    assert httpx.get(refused_url, headers={"X-Request-ID": "sse-2"}, timeout=10).status_code == 400
    # A WebSocket, with its ticket too. (Neither granian nor daphne sends headers with an
    # accepted handshake: its id is the one it came with, or the one in its lines.)
    ws_ticket = ticket(api)
    with connect(
        stack.ws_url(f"/api/contents/{channel.id}/ws?ticket={ws_ticket}"), origin=stack.origin, open_timeout=10,
        additional_headers={"X-Request-ID": "ws-1"},
    ) as socket:
        socket.send(json.dumps({"type": "subscribe"}))
        socket.recv(timeout=10)
    # A handshake refused (a foreign origin) is answered by the application: with the id.
    with pytest.raises(InvalidStatus) as refused:
        connect(stack.ws_url(f"/api/contents/{channel.id}/ws"), origin=Origin("https://evil.example"), open_timeout=10)
    assert refused.value.response.status_code == 403
    refused_id = refused.value.response.headers["X-Request-ID"]

    def ended(request_id: str) -> list[dict[str, Any]]:
        return [line for line in log_lines(stack) if line["logger"] == "stream" and line["request_id"] == request_id]

    assert wait_for(lambda: bool(ended("sse-1") and ended("ws-1")), timeout=20), "\n".join(
        json.dumps(line) for line in log_lines(stack) if line["logger"] in ("access", "stream")
    )
    [sse_access], [ws_access] = access_lines(stack, "sse-1"), access_lines(stack, "ws-1")
    assert (sse_access["route"], sse_access["status"], sse_access["user_id"]) == ("channel-events", 200, str(owner.pk))
    assert (ws_access["route"], ws_access["method"], ws_access["status"]) == ("channel-ws-http", "GET", 101)
    assert ws_access["user_id"] == str(owner.pk), "the socket's user (its ticket's), noted before it was accepted"
    [warning] = [line for line in log_lines(stack) if line["logger"] == "django.request"]
    assert (warning["request_id"], warning["status_code"], warning["level"]) == ("sse-2", 400, "WARNING")
    [refused_access] = access_lines(stack, refused_id)
    assert (refused_access["route"], refused_access["status"]) == ("channel-ws-http", 403) and not ended(refused_id)
    [sse_end], [ws_end] = ended("sse-1"), ended("ws-1")
    assert sse_end["transport"] == "sse" and sse_end["duration_s"] >= 0
    assert ws_end["transport"] == "ws" and ws_end["close_code"] == 1000
    output = stack.output()
    assert not [secret for secret in (sse_ticket, refused_ticket, ws_ticket, token) if secret in output]


@pytest.mark.parametrize(("log_format", "json_lines"), [("text", False), ("json", True)])
def test_log_format_chooses_plain_text_or_json_lines(log_format, json_lines):
    """LOG_FORMAT=text is for a person at a terminal (development's default)."""
    code = (
        "import django, logging; django.setup(); from core import request_log\n"
        "with request_log.bound('req-7'):\n    logging.getLogger('demo').warning('hello')\n"
    )
    env = {**os.environ, "LOG_FORMAT": log_format}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True)
    [line] = result.stderr.splitlines()
    if json_lines:
        assert json.loads(line) | {"time": None} == {
            "time": None, "level": "WARNING", "logger": "demo", "message": "hello", "request_id": "req-7",
        }
    else:
        assert line.endswith("WARNING demo [req-7] hello") and not line.startswith("{")


def test_an_unknown_log_format_stops_the_settings_with_a_message():
    env = {**os.environ, "LOG_FORMAT": "xml"}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert result.returncode != 0 and "LOG_FORMAT must be 'json' or 'text', not 'xml'" in result.stderr
