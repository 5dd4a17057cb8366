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
"""

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


async def _refuse(send: Callable[[dict[str, Any]], Awaitable[None]], limit: int) -> None:
    detail = f"The request body is larger than this endpoint accepts ({limit} bytes)."
    body = problem(413, type_="client_error", errors=[{"code": "too_large", "detail": detail, "attr": None}], detail=detail)
    payload = json.dumps(body, separators=(",", ":")).encode()
    await send({
        "type": "http.response.start",
        "status": 413,
        "headers": [
            (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
            (b"content-length", str(len(payload)).encode()),
            # The rest of the body is not read: the connection cannot carry another request.
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

        async def counting_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
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
