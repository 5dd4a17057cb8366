"""core.fast_redis.LeanClient used from two event loops, as a stream's end may be run on
another thread's loop (a response's close through async_to_sync) while the process's own
loop keeps calling: each call gets its own reply, and the other loop's calls never touch
the owner loop's connection (whose waiters that loop alone may wake)."""

import asyncio
import threading
import uuid

import redis
from django.conf import settings

from core.fast_redis import LeanClient


def test_a_call_from_another_loop_gets_its_own_reply_and_leaves_the_loops_connection_alone():
    client = LeanClient(settings.REDIS_URL, timeout=2, connect_timeout=2)
    key = f"test:lean:{uuid.uuid4().hex}"
    plain = redis.Redis.from_url(settings.REDIS_URL)
    plain.set(key, b"value")
    owner = asyncio.new_event_loop()
    try:
        async def first() -> object:
            return await client.call("GET", key)

        assert owner.run_until_complete(first()) == b"value"
        owned = client.protocol
        assert owned is not None and not owned.lost

        # Another thread's loop calls while the owner's loop is idle between calls, as a
        # stream's close does: 50 calls, each with a reply it can tell is its own.
        replies: list[object] = []

        def elsewhere() -> None:
            async def many() -> None:
                replies.extend([await client.call("ECHO", f"call-{n}") for n in range(50)])  # one after another

            asyncio.run(many())

        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join(timeout=30)
        assert replies == [f"call-{n}".encode() for n in range(50)]

        # The owner's connection is the same one, alive, with no waiter left behind.
        assert client.protocol is owned and not owned.lost and not owned.waiters
        assert owner.run_until_complete(first()) == b"value"
    finally:
        owner.close()
        plain.delete(key)
