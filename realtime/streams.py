"""Publishing events: the one way any producer reports a change.

`publish()` runs inside the transaction of the change: it takes the stream's next
id, writes the event row, and only after commit wakes the stream's channel-layer
group. A rolled-back change leaves neither row nor message behind.
"""

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection, transaction

from realtime.models import Event, Stream

logger = logging.getLogger(__name__)


def channel_stream(channel_id: Any) -> str:
    return f"channel:{channel_id}"


def user_stream(user_id: Any) -> str:
    return f"user:{user_id}"


def group_name(stream: str) -> str:
    """Channels group names allow only ASCII letters, digits, '-', '_' and '.'."""
    return "stream." + stream.replace(":", ".")


def access_group(user_id: Any) -> str:
    """Every stream connection of a user also joins this group, so that losing access
    everywhere at once (a suspension) reaches all of them."""
    return group_name(f"access:{user_id}")


def publish(stream: str, type: str, payload: dict[str, Any]) -> Event:
    if not connection.in_atomic_block:
        raise RuntimeError("publish() must run inside the transaction of the change it reports.")
    table = Stream._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f'INSERT INTO "{table}" (name, last_seq) VALUES (%s, 1) '
            f'ON CONFLICT (name) DO UPDATE SET last_seq = "{table}".last_seq + 1 RETURNING last_seq',
            [stream],
        )
        (seq,) = cursor.fetchone()
    event = Event.objects.create(stream=stream, seq=seq, type=type, payload=payload)
    transaction.on_commit(lambda: send_to_group(event))
    return event


def message_for(event: Event) -> dict[str, Any]:
    return {"type": "stream.event", "stream": event.stream, "id": event.seq, "event_type": event.type, "data": event.payload}


def _group_send(stream: str, message: dict[str, Any]) -> None:
    _group_send_to(group_name(stream), message)


def _group_send_to(group: str, message: dict[str, Any]) -> None:
    """The fast path; a failure is logged, not raised: replay reads the rows, and
    connections check access again when they reopen."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:
        logger.exception("Could not send %s to %s", message["type"], group)


def send_to_group(event: Event) -> None:
    _group_send(event.stream, message_for(event))


def revoke_subscriber(stream: str, user_id: Any) -> None:
    """After commit, tell every connection of `user_id` on `stream` to close: the user
    may no longer read it. (Connections check access when they open; this covers
    the ones already open.)"""

    message = {"type": "stream.revoke", "stream": stream, "user_id": str(user_id)}
    transaction.on_commit(lambda: _group_send(stream, message))


def revoke_user_everywhere(user_id: Any) -> None:
    """After commit, close every open stream connection of `user_id`, whatever it reads."""
    message = {"type": "stream.revoke", "stream": None, "user_id": str(user_id)}
    transaction.on_commit(lambda: _group_send_to(access_group(user_id), message))


def current_seq(stream: str) -> int:
    """The stream's last committed event id (0 when it has none yet)."""
    return Stream.objects.filter(name=stream).values_list("last_seq", flat=True).first() or 0


def prune_events(*, older_than_hours: int) -> int:
    """Drop events past the retention window; a client behind them gets `resync`."""
    from datetime import timedelta

    from django.utils import timezone

    deleted, _ = Event.objects.filter(created_at__lt=timezone.now() - timedelta(hours=older_than_hours)).delete()
    return deleted
