from typing import Any

from realtime.consumers import StreamConsumer
from realtime.streams import user_stream


class UserEventsConsumer(StreamConsumer):
    """WS /v1/ws: the caller's own stream (AI job updates, notifications)."""

    async def resolve_stream(self, message: dict[str, Any]) -> str:
        return user_stream(self.user.id)
