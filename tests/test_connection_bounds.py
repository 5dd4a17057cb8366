"""What one connection, and one client, can make the production server hold: sent from
outside to a real granian started as `make run` starts it (config.web_server), memory
read from /proc of the worker that serves the requests.

Each test sends what issue 17's table measured (h2c header lists, large headers, slow
heads and bodies, large WebSocket messages, requests held open) and fails when the
bound that answers it is removed."""

import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from knox.models import AuthToken
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.helpers import make_user
from tests.live import Granian, rss_bytes

MB = 1024 * 1024


@pytest.fixture
def granian(transactional_db) -> Iterator[Granian]:
    server = Granian()
    yield server
    server.close()


# --- HTTP/2 in clear text, request heads ------------------------------------------------


def _h2_frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def _hpack_int(value: int, prefix_bits: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([value])
    out = [limit]
    value -= limit
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def _hpack_literal(name: bytes, value: bytes) -> bytes:
    """A header field as a literal without indexing, new name (RFC 7541, 6.2.2)."""
    return b"\x00" + _hpack_int(len(name), 7) + name + _hpack_int(len(value), 7) + value


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def send_h2c_requests_with_large_headers(port: int, *, requests: int, header_bytes: int) -> tuple[bytes, socket.socket]:
    """One cleartext HTTP/2 connection (prior knowledge) carrying `requests` GETs, each
    with a header of `header_bytes`, in HEADERS and CONTINUATION frames of 16 KiB. The
    server's first answer to the preface, and the connection, left open."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(H2_PREFACE + _h2_frame(0x4, 0, 0, b""))  # and an empty SETTINGS
    try:
        first = sock.recv(64)
    except OSError:
        first = b""
    try:
        for n in range(requests):
            block = b"".join([
                _hpack_literal(b":method", b"GET"), _hpack_literal(b":scheme", b"http"),
                _hpack_literal(b":path", b"/healthz"), _hpack_literal(b":authority", b"127.0.0.1"),
                _hpack_literal(b"x-filler", b"a" * header_bytes),
            ])
            frames = [block[i:i + 16384] for i in range(0, len(block), 16384)]
            end_headers = 0x4
            sock.sendall(_h2_frame(0x1, 0x1 | (end_headers if len(frames) == 1 else 0), 2 * n + 1, frames[0]))
            for i, fragment in enumerate(frames[1:], 1):
                sock.sendall(_h2_frame(0x9, end_headers if i == len(frames) - 1 else 0, 2 * n + 1, fragment))
    except OSError:
        pass  # the server closed the connection: what it should do
    return first, sock


def test_cleartext_http2_is_not_spoken_so_its_header_lists_cannot_fill_memory(granian):
    """Before: granian spoke h2c and took 30 requests of 15 MB headers on one anonymous
    connection, its worker +300-450 MB. Now it speaks HTTP/1.1 only: the preface is not
    answered with HTTP/2 SETTINGS and the connection ends; the worker grows by nothing
    worth the name."""
    worker = granian.worker_pid()
    before = rss_bytes(worker)
    first, sock = send_h2c_requests_with_large_headers(granian.port, requests=30, header_bytes=15_000_000)
    try:
        time.sleep(1)
        grown = rss_bytes(worker) - before
    finally:
        sock.close()
    # An HTTP/2 server's first frame is its SETTINGS (type 4): 9 bytes of header, type at [3].
    assert not (len(first) >= 9 and first[3] == 0x4), first
    assert grown < 40 * MB, f"the worker grew {grown / MB:.0f} MB"
    assert httpx.get(granian.url("/healthz"), timeout=5).status_code == 200


def test_a_request_head_over_its_limit_is_refused_with_431(granian):
    """hyper's default read buffer took heads of 408 KiB a connection; now 64 KiB
    (WEB_MAX_HEADER_BYTES; the buffer grows in doublings, so a head is refused once it
    passes twice that at most). 30 connections sending 15 MB heads each cost nothing."""
    worker = granian.worker_pid()
    before = rss_bytes(worker)
    answers = []
    for size in (200_000, 15_000_000):
        with socket.create_connection(("127.0.0.1", granian.port), timeout=10) as sock:
            with contextlib.suppress(OSError):  # refused mid-head
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: " + b"a" * size + b"\r\n\r\n")
            answers.append(sock.recv(200))
    socks = []
    for _ in range(30):
        sock = socket.create_connection(("127.0.0.1", granian.port), timeout=10)
        socks.append(sock)
        with contextlib.suppress(OSError):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: " + b"a" * 15_000_000)
    grown = rss_bytes(worker) - before
    for sock in socks:
        sock.close()
    assert all(answer.startswith(b"HTTP/1.1 431") for answer in answers), answers
    assert grown < 40 * MB, f"the worker grew {grown / MB:.0f} MB"
    # A head of ordinary size is served.
    assert httpx.get(granian.url("/healthz"), headers={"X-Filler": "a" * 16_000}, timeout=5).status_code == 200


@pytest.fixture
def quick_granian(transactional_db) -> Iterator[Granian]:
    """Deadlines of a few seconds, so that the test sees them pass."""
    server = Granian(WEB_HEADER_TIMEOUT_SECONDS="2", REQUEST_BODY_TIMEOUT_SECONDS="2", WEB_MAX_OPEN_PER_CLIENT="4")
    yield server
    server.close()


def _seconds_until_closed(sock: socket.socket, *, drip: bytes | None, every: float = 0.5, within: float = 20) -> tuple[float, bytes]:
    """Send `drip` every `every` seconds (nothing, if None) until the server answers or
    closes; how long that took and what it said."""
    started = time.monotonic()
    sock.settimeout(every)
    answer = b""
    while time.monotonic() - started < within:
        try:
            chunk = sock.recv(4096)
            answer += chunk
            if not chunk or b"\r\n\r\n" in answer:
                break
        except TimeoutError:
            pass
        except OSError:
            break
        if drip is not None:
            try:
                sock.sendall(drip)
            except OSError:
                break
    return time.monotonic() - started, answer


def test_a_slow_or_silent_head_is_cut_off_at_its_deadline(quick_granian):
    """Before: a connection that sent nothing, or a header byte every half second, was
    held 30 s (granian's default). Now WEB_HEADER_TIMEOUT_SECONDS (2 s here)."""
    with socket.create_connection(("127.0.0.1", quick_granian.port), timeout=10) as silent:
        seconds, _ = _seconds_until_closed(silent, drip=None)
    assert seconds < 5, seconds
    with socket.create_connection(("127.0.0.1", quick_granian.port), timeout=10) as slow:
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        seconds, _ = _seconds_until_closed(slow, drip=b"a")
    assert seconds < 5, seconds


def test_a_slow_body_is_answered_408_at_its_deadline(quick_granian):
    """Before: 800 bodies trickling a byte at a time were all still open after 35 s.
    Now a body has REQUEST_BODY_TIMEOUT_SECONDS (2 s here) plus a second for every
    REQUEST_BODY_MIN_BYTES_PER_SECOND of its length: this one, 200 bytes, about 2 s."""
    with socket.create_connection(("127.0.0.1", quick_granian.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/auth/token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 200\r\n\r\n{")
        seconds, answer = _seconds_until_closed(sock, drip=b" ")
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert 1.5 < seconds < 6, seconds
    # A body that arrives in time is read as always (wrong credentials: a 401).
    in_time = httpx.post(quick_granian.url("/v1/auth/token"), json={"username": "x", "password": "y"}, timeout=10)
    assert in_time.status_code == 401


def test_one_client_holds_a_bounded_number_of_requests_open(quick_granian):
    """Before: nothing bounded what one address held open but the server's backpressure,
    shared by all. Now WEB_MAX_OPEN_PER_CLIENT (4 here) per worker: a fifth request
    while four slow bodies are held is a 429 at once; when they end, it is served."""
    held = []
    for _ in range(4):
        sock = socket.create_connection(("127.0.0.1", quick_granian.port), timeout=10)
        sock.sendall(b"POST /v1/auth/token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{")
        held.append(sock)
    time.sleep(0.3)
    refused = httpx.get(quick_granian.url("/healthz"), timeout=5)
    assert refused.status_code == 429, refused.text
    assert refused.json()["errors"][0]["code"] == "too_many_open"
    for sock in held:
        sock.close()
    time.sleep(0.5)
    assert httpx.get(quick_granian.url("/healthz"), timeout=5).status_code == 200


# --- WebSocket messages --------------------------------------------------------------------


def _ws_of_a_user(server: Granian):
    user = make_user()
    _, token = AuthToken.objects.create(user=user)
    ticket = httpx.post(server.url("/v1/realtime/tickets"), headers={"Authorization": f"Bearer {token}"}, timeout=10)
    return connect(server.ws_url(f"/v1/ws?ticket={ticket.json()['ticket']}"), origin=server.origin,
                   open_timeout=10, max_size=None)


def test_a_websocket_message_over_its_limit_closes_the_socket_with_4009_unparsed(granian, settings):
    """Before: an 8 MiB ping was read, parsed and answered. Now a message over
    REALTIME_WS_MAX_MESSAGE_BYTES is told `message_too_large` and the socket closed
    with 4009, before it is parsed; one within the limit is answered as ever."""
    limit = settings.REALTIME_WS_MAX_MESSAGE_BYTES
    with _ws_of_a_user(granian) as ws:
        ws.send(json.dumps({"type": "ping", "pad": "a" * (limit - 100)}))
        assert json.loads(ws.recv(timeout=10))["type"] == "pong"
        ws.send(json.dumps({"type": "ping", "pad": "a" * 8 * MB}))
        answers: list[dict] = []
        with contextlib.suppress(ConnectionClosed):
            answers.extend(json.loads(message) for message in ws)
    assert [a.get("code") for a in answers] == ["message_too_large"], answers
    assert ws.close_code == 4009


def test_large_websocket_messages_on_four_sockets_leave_the_worker_its_memory(granian):
    """Before: 4 sockets sending 60 MB messages grew the worker by 481 MB, kept. Now each
    socket is closed at its message, before it is parsed, and what the server had read
    is let go with it."""
    worker = granian.worker_pid()
    sockets = [_ws_of_a_user(granian) for _ in range(4)]
    before = rss_bytes(worker)
    message = json.dumps({"type": "ping", "pad": "a" * 60_000_000})
    # In frames of 1 MiB: granian refuses a single frame over 16 MiB by itself, but
    # assembles a message of up to 64 MiB from smaller ones and hands it over whole.
    fragments = [message[i:i + MB] for i in range(0, len(message), MB)]

    def send_large(ws) -> None:
        with contextlib.suppress(ConnectionClosed):
            ws.send(iter(fragments))

    senders = [threading.Thread(target=send_large, args=(ws,)) for ws in sockets]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(timeout=60)
    codes = []
    for ws in sockets:
        with contextlib.suppress(ConnectionClosed):
            for _ in ws:
                pass
        codes.append(ws.close_code)
    time.sleep(1)
    grown = rss_bytes(worker) - before
    print(f"worker grown by {grown / MB:.0f} MB after 4 x 60 MB messages")
    assert codes == [4009] * 4
    assert grown < 100 * MB, f"the worker kept {grown / MB:.0f} MB"
