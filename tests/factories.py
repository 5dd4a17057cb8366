"""Small builders for test data, going through the services where a service exists."""

from typing import Any

from contents.models import Channel, Content
from contents.services import channel_create, content_submit
from tests.helpers import make_user


def moved[T](row: T | None) -> T:
    """The row a move returned; None (someone else moved it first) has no place in a
    test that moves its own rows, so it fails the test here."""
    assert row is not None, "the move found the row moved by someone else"
    return row


def make_channel(owner=None, name: str = "channel") -> Channel:
    return channel_create(owner=owner or make_user(), name=name)


def make_content(channel: Channel | None = None, **fields: Any) -> Content:
    channel = channel or make_channel()
    fields.setdefault("title", "A title")
    fields.setdefault("description", "Cats sleep most of the day. Dogs like to walk. Birds sing in the morning.")
    return content_submit(channel=channel, provider=fields.pop("provider", channel.owner), **fields)
