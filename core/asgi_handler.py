"""Django's ASGI handler with the middleware chain run in one thread hop.

Django builds an ASGI middleware chain "async where it can": every MiddlewareMixin
middleware (Session, Common, Csrf, Auth, Messages, XFrame, Security) then runs each
of its hooks through `sync_to_async`, and WhiteNoise, which is sync-only, sends the
rest of the chain back to the event loop with `async_to_sync`. A no-op DRF request
crossed between the event loop and its thread about fifteen times, which cost more
CPU than the view itself.

Here the chain is built in sync mode, as under WSGI, and called with one
`sync_to_async` per request: the middleware and a sync view (all of DRF) run
straight through in the request's thread. The request still gets its own
ThreadSensitiveContext (ASGIHandler.handle), so the ORM's per-thread connection
rules are unchanged. An async view (the SSE stream) is adapted by Django's sync
`_get_response` with `async_to_sync`, which from a `sync_to_async` thread runs the
coroutine on the server's event loop; its async streaming body is sent by the
handler on the loop as before, so a stream holds no thread.

Django's handler also crosses twice more per request: the request_started signal
(`asend` runs its sync receivers through `sync_to_async`) and `response.close()`
(which sends request_finished). Here a plain response is produced and closed in the
same hop as the chain (its bytes are already rendered, and closing first returns the
database connection before they are sent); only a streaming response is sent under
the disconnect watch and closed afterwards, as Django does.

The request's thread is also reused: Django's ThreadSensitiveContext() starts a new
one-thread executor (a thread start and a join) for every request. Here each request
borrows an idle one-thread executor, as WSGI servers reuse their threads; up to
IDLE_EXECUTORS are kept. A request borrows it for its whole life, except a stream
with an async body (SSE): once its response is made, nothing of it runs in a thread
until its close() at the end, so its executor goes back to the idle ones then, and a
stream held for hours holds no thread (an idle thread was ~40 KiB of the ~90 KiB an
idle SSE stream cost, issue 20: bench/stream_memory.py). The stream's context still
sends its close() to that executor, which another request may be using meanwhile:
calls on it run one at a time, on the thread its connections were opened on. An
executor is never shut down here for that reason: one the pool has no room for is
dropped, and its thread ends with the last reference to it.
"""

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from typing import IO, Any

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse, HttpResponseBase, StreamingHttpResponse
from django.urls import set_script_prefix

IDLE_EXECUTORS = 64

# ASGI's receive and send, as Django's ASGIHandler declares them.
_ReceiveCallback = Callable[[], Awaitable[Mapping[str, Any]]]
_SendCallback = Callable[[Mapping[str, Any]], Awaitable[None]]


class OneHopASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        self._idle: list[ThreadPoolExecutor] = []
        super().__init__()

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)
        self._respond_in_thread = sync_to_async(self._respond, thread_sensitive=True)

    def _respond(self, scope: dict[str, Any], body_file: IO[bytes]) -> HttpResponseBase:
        """Everything a request does in its thread, in one call: request_started, the
        request, the middleware chain and view, and for a plain response its close."""
        signals.request_started.send(sender=self.__class__, scope=scope)
        created = self.create_request(scope, body_file)
        # create_request gives a request, or (the body could not be read) the error response.
        if created[0] is None:
            response = created[1]
        else:
            response = self.get_response(created[0])
            # What Django's run_get_response sets; its stubs do not declare this private attribute.
            response._handler_class = self.__class__  # type: ignore[attr-defined]  # Django's own marker; its stubs omit it
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size
        if not response.streaming:
            response.close()
        return response

    async def handle(
        self, scope: dict[str, Any], receive: _ReceiveCallback, send: _SendCallback, release: Callable[[], None] | None = None,
    ) -> None:
        """Django's handle() in one thread hop; `release` gives the request's executor
        back once nothing of the request runs in its thread until close()."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        with closing(body_file):
            set_script_prefix(get_script_prefix(scope))
            response = await self._respond_in_thread(scope, body_file)
            if not response.streaming:
                await self.send_response(response, send)
                return
            if isinstance(response, StreamingHttpResponse) and response.is_async and release is not None:
                # Sent from the loop; a sync body (a file) is read in the thread: it keeps it.
                release()
            try:
                # A stream ends as soon as its client goes away (Django's own way).
                async with asyncio.TaskGroup() as group:
                    group.create_task(self.listen_for_disconnect(receive))
                    await self.send_response(response, send)
                    raise _StreamSent
            except* (_StreamSent, RequestAborted):
                pass
            finally:
                await sync_to_async(response.close)()

    async def __call__(self, scope: dict[str, Any], receive: _ReceiveCallback, send: _SendCallback) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        executor = self._idle.pop() if self._idle else ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")
        released = False

        def release() -> None:
            # Once. A sync call still running (its request was cancelled, or a stream's
            # close) only delays the next request on this executor: calls never overlap.
            # Not shut down when the pool is full: a stream's context may still use it.
            nonlocal released
            if not released:
                released = True
                if len(self._idle) < IDLE_EXECUTORS:
                    self._idle.append(executor)

        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send, release)
        finally:
            release()


class _StreamSent(Exception):
    """Ends a stream's task group (and its disconnect watch) once the last byte is sent."""
