"""What every caller gets without asking: /healthz names what is down but not why, the
queue dashboard is for superusers only, the pages carry a Content-Security-Policy
(stored media keep their sandboxing one), and no response names the server software."""

import base64
import logging
import os
import re
import socket
from collections.abc import Iterator

import httpx
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from knox.models import AuthToken
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from core.media import SANDBOX_POLICY
from tests.helpers import make_user
from tests.live import Granian
from tests.media import make_video
from videos.services import video_upload

pytestmark = pytest.mark.django_db


# --- /healthz -------------------------------------------------------------------------------


def test_healthz_says_which_dependency_is_down_but_not_why(client, settings, caplog):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there: really down
    with caplog.at_level(logging.ERROR, logger="core.health"):
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable", "checks": {"database": "ok", "redis": "down", "queue": "ok"}, "down": ["redis"],
    }
    # The exception (host, port, errno) is in the log, for the operator, not in the answer.
    logged = "\n".join(record.getMessage() + str(record.exc_info and record.exc_info[1]) for record in caplog.records)
    assert "redis is down" in logged and "127.0.0.1:1" in logged
    assert "127.0.0.1" not in response.content.decode() and "Error" not in response.content.decode()


# --- /django-rq/ ----------------------------------------------------------------------------


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def queued_job_count() -> int:
    import django_rq

    return django_rq.get_queue("default").count


def enqueue_one() -> None:
    import django_rq

    django_rq.get_queue("default").enqueue("core.health.check_database")


@pytest.mark.parametrize("path", ["/django-rq/", "/django-rq/queues/0/", "/django-rq/stats.json/"])
def test_the_queue_dashboard_refuses_staff_who_are_not_superusers(path):
    staff = signed_in(make_user("staff", is_staff=True))
    assert staff.get(path).status_code == 403
    assert signed_in(make_user("root", is_staff=True, is_superuser=True)).get(path).status_code == 200


def test_a_staff_user_who_is_not_superuser_cannot_empty_a_queue():
    enqueue_one()
    staff = signed_in(make_user("staff", is_staff=True))
    assert staff.post("/django-rq/queues/0/empty/", {"post": "yes"}).status_code == 403
    assert staff.post("/django-rq/queues/actions/0/", {"action": "delete", "job_ids": []}).status_code == 403
    assert queued_job_count() == 1

    root = signed_in(make_user("root", is_staff=True, is_superuser=True))
    assert root.post("/django-rq/queues/0/empty/", {"post": "yes"}).status_code == 302
    assert queued_job_count() == 0


def test_the_queue_dashboard_sends_anonymous_callers_to_the_login():
    response = Client().get("/django-rq/")
    assert response.status_code == 302 and re.search(r"/admin/login/\?next=", response["Location"])


# --- Content-Security-Policy (the browser's side: tests/test_browser_pages.py) -----------------


@pytest.mark.parametrize("path", ["/accounts/login/", "/app/", "/app/studio/", "/admin/", "/api/docs/"])
def test_the_pages_carry_the_sites_content_security_policy(path):
    client = signed_in(make_user("root", is_staff=True, is_superuser=True))
    response = client.get(path)
    assert response.status_code == 200
    policy = dict(part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";"))
    assert policy["script-src"] == "'self'" and policy["object-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    if path != "/api/docs/":  # Swagger UI's page keeps one inline <style> (config/urls.py)
        assert policy["style-src"] == "'self'"


def test_stored_media_keep_their_own_sandboxing_policy(settings):
    settings.SERVE_MEDIA = True
    video = video_upload(owner=make_user(), file=SimpleUploadedFile("v.mp4", make_video(seconds=1)), title="v")
    response = Client().get(video.file.url)
    assert response.status_code == 200
    assert response["Content-Security-Policy"] == SANDBOX_POLICY


# --- no server banner, through the production server ----------------------------------------


def raw_exchange(port: int, request: bytes) -> tuple[str, list[tuple[str, str]]]:
    """Send one raw request; the status line and the header fields of the answer, as
    the server wrote them (names lowercased)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            data = connection.recv(65536)
            if not data:
                break
            head += data
    status, *lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    fields = [(name.strip().lower(), value.strip()) for name, _, value in (line.partition(":") for line in lines)]
    return status, fields


def handshake(server: Granian, path: str, origin: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n").encode()


def assert_names_no_server(status: str, fields: list[tuple[str, str]]) -> None:
    assert "granian" not in repr(fields).lower(), (status, fields)
    assert [value for name, value in fields if name == "server"] == [""], (status, fields)


@pytest.fixture
def granian(transactional_db) -> Iterator[Granian]:
    server = Granian(WEB_MAX_OPEN_PER_CLIENT="8")
    yield server
    server.close()


def test_no_answer_of_the_production_server_names_it(granian):
    get = "GET {} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".format
    answers = {
        "page": raw_exchange(granian.port, get("/accounts/login/").encode()),
        "health": raw_exchange(granian.port, get("/healthz").encode()),
        "redirect": raw_exchange(granian.port, get("/app/").encode()),
        "404": raw_exchange(granian.port, get("/no-such-page").encode()),
        "413": raw_exchange(granian.port, b"POST /v1/auth/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            b"Content-Type: application/json\r\nContent-Length: 99999999\r\n\r\n"),
    }
    assert [status.split()[1] for status, _ in answers.values()] == ["200", "200", "302", "404", "413"], answers
    for status, fields in answers.values():
        assert_names_no_server(status, fields)


def test_no_websocket_handshake_names_the_server_accepted_or_refused(granian):
    user = make_user("listener")
    token = AuthToken.objects.create(user=user)[1]
    ticket = httpx.post(granian.url("/v1/realtime/tickets"), headers={"Authorization": f"Bearer {token}"}).json()["ticket"]

    status, fields = raw_exchange(granian.port, handshake(granian, f"/v1/ws?ticket={ticket}", granian.origin))
    assert status.startswith("HTTP/1.1 101"), (status, fields)
    assert "granian" not in repr(fields).lower() and "server" not in dict(fields), fields

    # Refused before the handshake (a foreign origin), again and again: each answer is
    # the 403, unnamed, and each refusal ends (none is left holding one of this client's
    # 8 open places, or the request after them would be a 429).
    for _ in range(12):
        status, fields = raw_exchange(granian.port, handshake(granian, "/v1/ws", "https://evil.example"))
        assert status.startswith("HTTP/1.1 403"), (status, fields)
        assert_names_no_server(status, fields)
    # A WebSocket client reads it as the refusal it is.
    with pytest.raises(InvalidStatus) as refused:
        connect(granian.ws_url("/v1/ws"), origin=Origin("https://evil.example"), open_timeout=10)
    assert refused.value.response.status_code == 403
    assert httpx.get(granian.url("/healthz"), timeout=10).status_code == 200
