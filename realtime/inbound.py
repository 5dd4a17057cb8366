"""How fast a WebSocket client may send: a token bucket per connection.

A client sends a subscribe, an unsubscribe now and then and a ping every half
minute; a loop of messages makes the server parse, answer and (for a subscribe) read
the database for each. Each connection gets REALTIME_WS_MAX_MESSAGES_PER_SECOND
messages a second, with a burst of as many; past that the consumer says so and closes
the socket with 4008 (RFC 6455's 1008 "policy violation", in the application's range).
A counter per connection needs no shared state: the limit on streams per user
(realtime.hub) bounds what one user can send in all. Hand-written rather than a
rate-limit library: one connection's bucket is a dozen lines and no I/O."""

import time


class MessageRate:
    def __init__(self, per_second: float) -> None:
        self.rate = float(per_second)
        self.capacity = max(1.0, self.rate)
        self.tokens = self.capacity
        self.updated = time.monotonic()
        # Messages refused so far: the first is answered (and the socket closed), the
        # rest were already on their way and are dropped.
        self.refused = 0

    def allow(self) -> bool:
        """Take one message's token; False if the client is sending too fast, and for
        every message after that one."""
        if self.refused:
            self.refused += 1
            return False
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1.0:
            self.refused = 1
            return False
        self.tokens -= 1.0
        return True
