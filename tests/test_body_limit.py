"""Request bodies are refused while they are read (core.body_limit), in front of
Django: a declared length over the limit before a byte is read, a chunked body the
moment its count passes the limit; the upload endpoint alone takes more."""

import asyncio
import json
import socket
import time
from typing import Any

import pytest

from config.asgi import application
from tests.live import Granian

CHUNK = 64 * 1024


def call(path: str, *, chunks: int, declared: int | None = None, content_type: bytes = b"application/json") -> tuple[int, dict, int]:
    """POST `chunks` chunks of CHUNK bytes through the ASGI application; the answer's
    status and problem body, and how many chunks the application asked for."""
    headers = [(b"host", b"127.0.0.1"), (b"content-type", content_type)]
    if declared is not None:
        headers.append((b"content-length", str(declared).encode()))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"", "headers": headers,
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }
    asked = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if asked >= chunks:
            await asyncio.sleep(3600)  # the client waits for the answer
        asked += 1
        return {"type": "http.request", "body": b"x" * CHUNK, "more_body": asked < chunks}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(asyncio.wait_for(application(scope, receive, send), timeout=30))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    headers_out = dict(start["headers"])
    problem = json.loads(body) if headers_out.get(b"content-type") == b"application/problem+json" else {}
    return start["status"], problem, asked


def test_a_declared_length_over_the_limit_is_a_413_before_a_byte_is_read(settings):
    status, problem, asked = call("/v1/auth/token", chunks=100, declared=settings.REQUEST_MAX_BODY_BYTES + 1)
    assert (status, asked) == (413, 0)
    assert problem["status"] == 413 and problem["errors"][0]["code"] == "too_large"
    assert str(settings.REQUEST_MAX_BODY_BYTES) in problem["detail"]


def test_a_body_without_a_length_is_refused_as_soon_as_its_count_passes_the_limit(settings):
    # 1,000 chunks (64 MB) offered; reading stops at the one that passes 1 MiB.
    status, problem, asked = call("/v1/auth/token", chunks=1000)
    assert status == 413 and problem["errors"][0]["code"] == "too_large"
    assert asked == settings.REQUEST_MAX_BODY_BYTES // CHUNK + 1


def test_a_body_whose_declared_length_lies_is_counted_all_the_same(settings):
    status, _, asked = call("/v1/auth/token", chunks=1000, declared=100)
    assert status == 413
    assert asked == settings.REQUEST_MAX_BODY_BYTES // CHUNK + 1


def test_a_body_under_the_limit_reaches_django(settings):
    # Not a 413: Django answers (the unknown path is a 404 problem).
    status, _, asked = call("/no-such-endpoint", chunks=2, declared=2 * CHUNK)
    assert (status, asked) == (404, 2)


@pytest.mark.django_db(transaction=True)
def test_the_upload_endpoint_takes_bodies_up_to_its_file_limit_and_no_more(settings):
    settings.VIDEO_MAX_UPLOAD_BYTES = 4 * 1024 * 1024
    multipart = b"multipart/form-data; boundary=x"
    # 3 MiB is over the default limit but within the upload's: Django reads it (and
    # answers 401, as no token came with it).
    status, _, asked = call("/v1/videos", chunks=48, declared=48 * CHUNK, content_type=multipart)
    assert (status, asked) == (401, 48)
    status, _, asked = call("/v1/videos", chunks=200, declared=200 * CHUNK, content_type=multipart)
    assert (status, asked) == (413, 0)
    status, _, asked = call("/v1/videos", chunks=200, content_type=multipart)
    assert status == 413 and asked == (4 * 1024 * 1024 + 64 * 1024) // CHUNK + 1


@pytest.fixture
def granian(transactional_db):
    server = Granian()
    yield server
    server.close()


def test_granian_answers_a_210_mb_upload_413_without_waiting_for_its_body(granian):
    """What the production server does with it: the answer comes while the client has
    sent only its headers, so the 210 MB are never read, buffered or spooled."""
    with socket.create_connection(("127.0.0.1", granian.port), timeout=10) as client:
        client.sendall(
            b"POST /v1/videos HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: multipart/form-data; boundary=x\r\n"
            b"Content-Length: %d\r\n\r\n" % (210 * 1024 * 1024)
            + b"x" * CHUNK
        )
        started = time.monotonic()
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = client.recv(65536)
            if not data:
                break
            answer += data
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"application/problem+json" in answer
    assert time.monotonic() - started < 5
