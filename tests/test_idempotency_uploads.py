"""An upload sent with an `Idempotency-Key` is the same request only if its file's
bytes are the same: the fingerprint holds a digest of the content, taken while the
upload streams in (core.uploads), not the file's name."""

import asyncio
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from knox.models import AuthToken

from config.asgi import application
from tests.helpers import api_client_for, make_user
from tests.media import make_video
from videos.models import Video

FIRST = make_video(seconds=1)
OTHER = make_video(seconds=1, width=176, height=144)


def post(client, data: bytes, *, name: str = "clip.mp4", title: str = "Clip", key: str = "upload-1"):
    return client.post(
        "/v1/videos", {"file": SimpleUploadedFile(name, data, content_type="video/mp4"), "title": title},
        format="multipart", HTTP_IDEMPOTENCY_KEY=key,
    )


@pytest.fixture(params=["in memory", "spooled to disk"])
def uploads(request, settings) -> str:
    """Django keeps a small upload in memory and writes a larger one to a temporary
    file: the digest is taken on both paths."""
    if request.param == "spooled to disk":
        settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024
    return request.param


@pytest.mark.django_db
def test_the_same_key_title_and_name_with_other_bytes_is_a_422_and_creates_nothing(uploads):
    assert FIRST != OTHER
    client = api_client_for(make_user())
    first = post(client, FIRST)
    assert first.status_code == 201, first.content
    again = post(client, OTHER)
    assert again.status_code == 422, again.content
    assert again["Content-Type"] == "application/problem+json"
    assert "Idempotency-Key" in again.json()["detail"]
    assert "Idempotent-Replayed" not in again
    assert Video.objects.count() == 1
    assert Video.objects.get().size_bytes == len(FIRST)


@pytest.mark.django_db
def test_the_same_key_and_bytes_are_replayed_whatever_the_file_is_called(uploads):
    """The client's file name is never stored (videos.services): the same content is the same request."""
    client = api_client_for(make_user())
    first = post(client, FIRST, name="clip.mp4")
    again = post(client, FIRST, name="renamed.mov")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Video.objects.count() == 1


@pytest.mark.django_db
def test_another_key_with_the_same_bytes_is_another_video():
    client = api_client_for(make_user())
    assert post(client, FIRST, key="a").status_code == 201
    assert post(client, FIRST, key="b").status_code == 201
    assert Video.objects.count() == 2


CHUNK = 64 * 1024
BOUNDARY = b"digest-test-boundary"


def stream_upload(token: str, *, file_bytes: int) -> tuple[int, int]:
    """POST a multipart upload of `file_bytes` bytes through the ASGI application, its
    body made chunk by chunk as the application asks for it (the test never holds it
    whole); the answer's status and the peak of memory Python allocated meanwhile."""
    head = (
        b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="title"\r\n\r\nBig\r\n'
        b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n'
        b"Content-Type: video/mp4\r\n\r\n"
    )
    tail = b"\r\n--" + BOUNDARY + b"--\r\n"

    def body() -> Iterator[bytes]:
        yield head
        for index in range(file_bytes // CHUNK):
            yield bytes([index % 251]) * CHUNK
        yield tail

    length = len(head) + file_bytes // CHUNK * CHUNK + len(tail)
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/v1/videos", "raw_path": b"/v1/videos", "root_path": "", "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"), (b"content-type", b"multipart/form-data; boundary=" + BOUNDARY),
            (b"content-length", str(length).encode()), (b"authorization", f"Bearer {token}".encode()),
            (b"idempotency-key", b"big-1"),
        ],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }
    parts = body()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        chunk = next(parts, None)
        if chunk is None:
            await asyncio.sleep(3600)  # the client waits for the answer
        return {"type": "http.request", "body": chunk, "more_body": chunk is not tail}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    tracemalloc.start()
    try:
        asyncio.run(asyncio.wait_for(application(scope, receive, send), timeout=60))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return next(m for m in sent if m["type"] == "http.response.start")["status"], peak


@pytest.mark.django_db(transaction=True)
def test_digesting_a_large_upload_does_not_hold_it_in_memory():
    """48 MiB streamed in (not a video: a 400 once decoding fails): what Python holds at
    its peak stays a small fraction of the file, so the digest keeps no content."""
    _, token = AuthToken.objects.create(user=make_user())
    file_bytes = 48 * 1024 * 1024
    status, peak = stream_upload(token, file_bytes=file_bytes)
    assert status == 400
    assert peak < file_bytes // 6, f"peak {peak} bytes while a {file_bytes}-byte upload streamed in"
