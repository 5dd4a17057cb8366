"""Request bodies are limited while they are read, in front of Django (ASGI).

Django's ASGI handler reads the whole body (spooled to disk past
FILE_UPLOAD_MAX_MEMORY_SIZE) before any view or middleware runs, so a limit checked
by Django is checked after the fact: a 210 MB upload was read, written to disk
twice and only then refused. Here a body is refused before Django sees it:

- a declared Content-Length over the limit is answered 413 without reading a byte;
- otherwise the bytes are counted as the server hands them over (chunked bodies
  included), and the request is answered 413 the moment the count passes the limit.

Every endpoint accepts REQUEST_MAX_BODY_BYTES; a view that needs more (an upload)
says so with `@body_limit(...)`, read per request so that settings apply at once.

A body must also arrive in time: by REQUEST_BODY_TIMEOUT_SECONDS after the request
began, plus a second for every REQUEST_BODY_MIN_BYTES_PER_SECOND of its length (the
declared one, else the limit). Otherwise the request is answered 408 and closed: a
client that sends a byte now and then held a request, and the memory and the place in
the server's backpressure that go with it, for as long as it liked.
"""

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from django.conf import settings
from django.urls import Resolver404, resolve

from core.errors import PROBLEM_CONTENT_TYPE, problem

# Any ASGI application (scope, receive, send): the stubs of Django's handler and of
# channels' routers each type the scope their own way.
ASGIApp = Callable[..., Awaitable[None]]
ViewClass = TypeVar("ViewClass", bound=type)
# Where @body_limit keeps a view class's limit.
LIMIT_ATTRIBUTE = "max_body_bytes"


class BodyTooLarge(Exception):
    pass


class BodyTooSlow(Exception):
    pass


def body_limit(limit: Callable[[], int]) -> Callable[[ViewClass], ViewClass]:
    """Class decorator: the view accepts request bodies up to `limit()` bytes."""

    def decorate(view_class: ViewClass) -> ViewClass:
        # An attribute the view class does not declare, read back by limit_for.
        setattr(view_class, LIMIT_ATTRIBUTE, staticmethod(limit))
        return view_class

    return decorate


def limit_for(path: str) -> int:
    """The body limit of the view that serves `path`."""
    try:
        view = resolve(path).func
    except Resolver404:
        return settings.REQUEST_MAX_BODY_BYTES
    # DRF's as_view() keeps the class as `cls`, Django's as `view_class`.
    owner = getattr(view, "cls", None) or getattr(view, "view_class", None) or view
    limit = getattr(owner, LIMIT_ATTRIBUTE, None)
    return limit() if limit is not None else settings.REQUEST_MAX_BODY_BYTES


def _declared_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length itself
    return None


def body_deadline(declared: int | None, limit: int) -> float:
    """Seconds from the request's start by which its whole body must have arrived."""
    expected = declared if declared is not None else limit
    return settings.REQUEST_BODY_TIMEOUT_SECONDS + expected / max(1, settings.REQUEST_BODY_MIN_BYTES_PER_SECOND)


async def _refuse(send: Callable[[dict[str, Any]], Awaitable[None]], limit: int) -> None:
    detail = f"The request body is larger than this endpoint accepts ({limit} bytes)."
    await send_problem(send, 413, "too_large", detail)


async def _refuse_slow(send: Callable[[dict[str, Any]], Awaitable[None]], seconds: float) -> None:
    detail = f"The request body did not arrive within {seconds:.0f} seconds."
    await send_problem(send, 408, "timeout", detail)


async def send_problem(
    send: Callable[[dict[str, Any]], Awaitable[None]], status: int, code: str, detail: str,
    extra_headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    """A problem answer sent at the ASGI level, by a layer in front of Django, on a
    connection that then closes (the rest of the body is not read)."""
    body = problem(status, type_="client_error", errors=[{"code": code, "detail": detail, "attr": None}], detail=detail)
    payload = json.dumps(body, separators=(",", ":")).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
            (b"content-length", str(len(payload)).encode()),
            *extra_headers,
            (b"connection", b"close"),
        ],
    })
    await send({"type": "http.response.body", "body": payload})


class BodyLimitMiddleware:
    """ASGI middleware for the HTTP app: see the module's docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        root = scope.get("root_path", "")
        limit = limit_for(path[len(root):] if root and path.startswith(root) else path)
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, limit)
            return

        received = 0
        started = False
        complete = False
        seconds = body_deadline(declared, limit)
        deadline = asyncio.get_running_loop().time() + seconds

        async def counting_receive() -> dict[str, Any]:
            nonlocal received, complete
            if complete:
                # The body is in: what is left to hear is the client going away, which
                # takes as long as the response does (a stream's whole life).
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTooSlow from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
                complete = not message.get("more_body", False)
            else:
                complete = True
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            # Django reads the whole body before it answers, so nothing was sent yet.
            if not started:
                await _refuse(send, limit)
        except BodyTooSlow:
            if not started:
                await _refuse_slow(send, seconds)
