"""Structured logs: a request id on every line, and one access line per request.

Every request (HTTP, or a WebSocket handshake) gets an id: the `X-Request-ID` it came
with when that is a short token of safe characters (a proxy's or a client's own, to
follow one request across systems), otherwise a new one (uuid4, hex). The response
carries it back in `X-Request-ID`, and it is kept in a context variable for as long as
the request runs, so that every log line written meanwhile names it (RequestIdFilter,
on the handlers of settings.LOGGING). It goes further with the work the request starts:
the RQ jobs it enqueues carry it in their meta (core.lifecycle.enqueue) and the worker
sets it again around each job (core.worker), and the events published meanwhile record
it (realtime.streams.publish: a column of the Event row, never the payload).

AccessLog, the outermost ASGI middleware (config/asgi.py), writes one line per request
to the `access` logger when its response starts: request id, route (the URL's name),
method, status, latency to that first byte in ms, user id, client address (as the
throttles see it, core.client.client_address). It is the access log: granian runs
without its own. It writes it at the response's start, not its end, for every response
alike: a stream (SSE) would otherwise be logged when it ends, an hour later, and the
latency is the one the metrics measure (core.metrics). A stream (an SSE response, an
accepted WebSocket) writes a second line to the `stream` logger when it ends: how long
it lasted and, for a WebSocket, the close code. Requests that never answered (the client
left first) are logged when they end, with no status; an application error before any
answer, with 500.

Nothing of the request's content is logged: no path (a password-reset link holds its
token in the path) nor query string (tickets), no header but the request id.
"""

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

import pythonjsonlogger.json
from django.http import HttpRequest, HttpResponseBase
from django.urls import Resolver404, resolve
from django.utils.deprecation import MiddlewareMixin
from django.utils.functional import SimpleLazyObject, empty

from core.client import ScopeRequest, client_address

REQUEST_ID_HEADER = "X-Request-ID"
_HEADER = REQUEST_ID_HEADER.lower().encode()
# Letters, digits and - _ . : (a UUID, hex, a ULID), at most 128: anything else (spaces,
# quotes, line breaks, an overlong value) could forge or garble a log line, and is
# replaced by an id of our own.
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

access_logger = logging.getLogger("access")
stream_logger = logging.getLogger("stream")

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
_job_id: ContextVar[str | None] = ContextVar("job_id", default=None)


def current_request_id() -> str | None:
    """The id of the request (or of the request that started the job) being served."""
    return _request_id.get()


def sane_request_id(value: object) -> str | None:
    """`value` if it may serve as a request id, else None."""
    if isinstance(value, str) and _SANE_ID.fullmatch(value):
        return value
    return None


def new_request_id() -> str:
    return uuid.uuid4().hex


@contextmanager
def bound(request_id: str | None, *, job_id: str | None = None) -> Iterator[None]:
    """Log lines written inside carry `request_id` (and `job_id`): the worker around a job."""
    request_token = _request_id.set(sane_request_id(request_id))
    job_token = _job_id.set(job_id)
    try:
        yield
    finally:
        _job_id.reset(job_token)
        _request_id.reset(request_token)


class RequestIdFilter(logging.Filter):
    """On a handler: every record it writes names the current request (None outside
    any), and the current job in a worker."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get()
        job_id = _job_id.get()
        if job_id is not None and not hasattr(record, "job_id"):
            record.job_id = job_id
        return True


class JsonFormatter(pythonjsonlogger.json.JsonFormatter):
    """python-json-logger's formatter (settings.LOGGING, LOG_FORMAT=json), writing only
    plain values: a line's `extra` that is an object is left out. It would be written
    as its repr, and Django gives its request lines (django.request: 4xx, 5xx) the
    request itself, whose repr holds the whole URL: a ticket in its query string."""

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in log_data.items() if isinstance(value, _PLAIN)}


_PLAIN = (str, int, float, bool, type(None), datetime)


# --- The access log ---------------------------------------------------------------------

ASGIMessage = dict[str, Any]
Receive = Callable[[], Awaitable[ASGIMessage]]
Send = Callable[[ASGIMessage], Awaitable[None]]


def _incoming_id(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == _HEADER:
            return sane_request_id(value.decode("latin-1"))
    return None


def _route_of(path: str) -> str | None:
    """The URL name of `path`, for a request Django did not route (answered before it
    was: a body over its limit, too many open requests; a WebSocket, by its path's HTTP
    twin, which answers a plain GET with 426)."""
    try:
        return resolve(path).view_name
    except Resolver404:
        return None


class Exchange:
    """One request as the access log sees it. The Django middleware below (and a stream
    that authenticates on its own: note_user) fills in what only the application knows."""

    def __init__(self, scope: dict[str, Any]) -> None:
        self.started = time.perf_counter()
        self.websocket = scope["type"] == "websocket"
        # A WebSocket handshake is a GET, answered 101 when accepted.
        self.method = "GET" if self.websocket else str(scope.get("method", ""))
        self.request_id = _incoming_id(scope) or new_request_id()
        self.path = str(scope.get("path", ""))  # to name its route, never logged
        self.client = client_address(ScopeRequest(scope))
        self.route: str | None = None
        self.user_id: str | None = None
        self.status: int | None = None
        self.logged = False
        self.stream = False  # an SSE response or an accepted WebSocket: its end is logged too
        self.close_code: int | None = None

    def _fields(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "route": self.route, "method": self.method, "user_id": self.user_id,
                "client": self.client}

    def log_access(self, status: int | None) -> None:
        if self.logged:
            return
        self.logged = True
        self.status = status
        if self.route is None:
            self.route = _route_of(self.path)
        latency_ms = round((time.perf_counter() - self.started) * 1000, 1)
        access_logger.info(
            "%s %s %s %.1f ms", self.method, self.route or "-", status if status is not None else "-", latency_ms,
            extra={**self._fields(), "status": status, "latency_ms": latency_ms},
        )

    def log_stream_end(self) -> None:
        duration_s = round(time.perf_counter() - self.started, 3)
        transport = "ws" if self.websocket else "sse"
        extra: dict[str, Any] = {**self._fields(), "transport": transport, "duration_s": duration_s}
        if self.websocket:
            extra["close_code"] = self.close_code
        stream_logger.info("%s stream %s ended after %.1f s", transport, self.route or "-", duration_s, extra=extra)

    def _with_id(self, headers: Any) -> list[tuple[bytes, bytes]]:
        kept = [(name, value) for name, value in headers or () if name.lower() != _HEADER]
        return [*kept, (_HEADER, self.request_id.encode())]

    def sending(self, send: Send) -> Send:
        async def logged_send(message: ASGIMessage) -> None:
            kind = message["type"]
            if kind in ("http.response.start", "websocket.http.response.start"):
                message = {**message, "headers": self._with_id(message.get("headers"))}
                self.stream = kind == "http.response.start" and any(
                    name.lower() == b"content-type" and value.startswith(b"text/event-stream")
                    for name, value in message["headers"]
                )
                # Logged before it is sent: a client gone by then does not make it a 500.
                self.log_access(int(message["status"]))
            elif kind == "websocket.accept":
                message = {**message, "headers": self._with_id(message.get("headers"))}
                self.stream = True
                self.log_access(101)
            elif kind == "websocket.close":
                if not self.logged:
                    # Closed before it was accepted: the server refuses the handshake with 403.
                    self.log_access(403)
                elif self.stream and self.close_code is None:
                    self.close_code = int(message.get("code", 1000))
            await send(message)

        return logged_send

    def receiving(self, receive: Receive) -> Receive:
        async def logged_receive() -> ASGIMessage:
            message = await receive()
            if message["type"] == "websocket.disconnect" and self.close_code is None:
                self.close_code = int(message.get("code", 1005))
            return message

        return logged_receive

    def finish(self, *, failed: bool) -> None:
        if not self.logged:
            # No answer: the application failed (the server answers 500), or the client left first.
            self.log_access(500 if failed else None)
        if self.stream:
            self.log_stream_end()


_exchange: ContextVar[Exchange | None] = ContextVar("exchange", default=None)


class AccessLog:
    """Outermost ASGI middleware: the request id and the access line (module docstring)."""

    def __init__(self, app: Callable[[Any, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        exchange = Exchange(scope)
        id_token = _request_id.set(exchange.request_id)
        exchange_token = _exchange.set(exchange)
        try:
            await self.app(scope, exchange.receiving(receive) if exchange.websocket else receive, exchange.sending(send))
        except BaseException as error:
            # Cancelled: the server gave up on it (its client left), not an error of the application.
            exchange.finish(failed=not isinstance(error, asyncio.CancelledError))
            raise
        else:
            exchange.finish(failed=False)
        finally:
            _exchange.reset(exchange_token)
            _request_id.reset(id_token)


def note_user(user_id: Any) -> None:
    """The user the current request authenticated as, for its access line: a stream
    that authenticates on its own (a ticket, a Bearer token) says so here."""
    exchange = _exchange.get()
    if exchange is not None and user_id is not None:
        exchange.user_id = str(user_id)


def note_route(route: str) -> None:
    """The URL name of the current request, for its access line, from a layer that
    routed it itself (core.fast_path): it is not looked up again."""
    exchange = _exchange.get()
    if exchange is not None:
        exchange.route = route


class RequestLogMiddleware(MiddlewareMixin):
    """Django middleware: the route and user of the request, for its access line.

    The user is read only if the request looked at it (a session's user is loaded
    lazily): the access log costs no query."""

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        exchange = _exchange.get()
        if exchange is None:
            return response
        match = getattr(request, "resolver_match", None)
        if match is not None:
            exchange.route = match.view_name
        user = request.__dict__.get("user")  # AuthenticationMiddleware's (lazy), or the one DRF authenticated
        if isinstance(user, SimpleLazyObject) and user._wrapped is empty:
            return response
        if user is not None and user.is_authenticated:
            note_user(user.pk)
        return response
