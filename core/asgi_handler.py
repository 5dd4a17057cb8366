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

The request's thread is also reused: Django's ThreadSensitiveContext() starts a new
one-thread executor (a thread start and a join) for every request. Here each request
borrows an idle one-thread executor for its whole life, one request at a time, as
WSGI servers reuse their threads; up to IDLE_EXECUTORS are kept.
"""

from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core.handlers.asgi import ASGIHandler

IDLE_EXECUTORS = 64


class OneHopASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        self._idle: list[ThreadPoolExecutor] = []
        super().__init__()

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)
        self._middleware_chain = sync_to_async(self._middleware_chain, thread_sensitive=True)

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        executor = self._idle.pop() if self._idle else ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            # A sync call still running (its request was cancelled) only delays the next
            # request on this executor: calls on it never overlap.
            if len(self._idle) < IDLE_EXECUTORS:
                self._idle.append(executor)
            else:
                executor.shutdown(wait=False)
