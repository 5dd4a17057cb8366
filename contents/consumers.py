from typing import Any

from contents.streams import may_read_channel
from realtime.consumers import StreamConsumer, SubscriptionRefused
from realtime.streams import channel_stream


class ChannelEventsConsumer(StreamConsumer):
    """WS /api/contents/{channel_id}/ws. The seed sends `user_id` too; it is ignored:
    the socket's user is the authenticated one."""

    async def resolve_stream(self, message: dict[str, Any]) -> str:
        channel_id = self.scope["url_route"]["kwargs"]["channel_id"]
        claimed = message.get("channel_id")
        if claimed is not None and str(claimed) != str(channel_id):
            raise SubscriptionRefused("channel_mismatch", "channel_id differs from the channel in the URL.")
        return channel_stream(channel_id)

    async def check_access(self, stream: str) -> None:
        if not await may_read_channel(self.user, self.scope["url_route"]["kwargs"]["channel_id"]):
            raise SubscriptionRefused("forbidden", "You may not read this channel.", close=True)

    def subscribed_fields(self, message: dict[str, Any]) -> dict[str, Any]:
        return {"channel_id": str(self.scope["url_route"]["kwargs"]["channel_id"])}
