"""Notifications are created only here, in the transaction of what caused them, and
pushed on the recipient's stream (`notification`) once it commits."""

import uuid
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Block
from notifications.models import Notification
from realtime.streams import publish, user_stream

NOTIFICATION = "notification"


def unread_count(user_id: Any) -> int:
    return Notification.objects.filter(recipient_id=user_id, is_read=False).count()


def notification_payload(notification: Notification) -> dict[str, Any]:
    return {
        "id": str(notification.id),
        "type": notification.type,
        "actor_id": str(notification.actor_id) if notification.actor_id else None,
        "data": {**notification.data, "count": notification.count},
        "is_read": notification.is_read,
        "created_at": notification.created_at.isoformat(),
    }


def notify(*, recipient_id: Any, actor_id: Any | None, type: str, data: dict[str, Any], group_key: str = "") -> Notification | None:
    """Tell `recipient_id` about `type`. Nothing for one's own action or from a user one
    has blocked. With a `group_key`, an unread notification with the same key grows
    its count and moves to the top instead of adding a row."""
    if actor_id is not None and str(actor_id) == str(recipient_id):
        return None
    if actor_id is not None and Block.objects.filter(blocker_id=recipient_id, blocked_id=actor_id).exists():
        return None
    now = timezone.now()
    with transaction.atomic():
        notification = None
        if group_key:
            # Insert, or grow the unread group; the group can be marked read between the
            # two, in which case the insert succeeds on the next round.
            for _ in range(3):
                try:
                    with transaction.atomic():
                        notification = Notification.objects.create(
                            recipient_id=recipient_id, actor_id=actor_id, type=type, data=data, group_key=group_key, created_at=now
                        )
                    break
                except IntegrityError:
                    group = Notification.objects.filter(recipient_id=recipient_id, group_key=group_key, is_read=False)
                    if group.update(count=F("count") + 1, actor_id=actor_id, data=data, created_at=now):
                        notification = group.first()
                        if notification is not None:
                            break
            if notification is None:
                raise RuntimeError(f"Could not record the {type} notification for {recipient_id}.")
        else:
            notification = Notification.objects.create(recipient_id=recipient_id, actor_id=actor_id, type=type, data=data, created_at=now)
        publish(
            user_stream(recipient_id),
            NOTIFICATION,
            {**notification_payload(notification), "unread_count": unread_count(recipient_id)},
        )
    return notification


def mark_read(
    *, user: Any, notification_ids: list[uuid.UUID] | None = None, everything: bool = False, before: datetime | None = None
) -> int:
    """Mark the caller's unread notifications read, in one UPDATE; returns how many
    were unread and are now read. Pushes the new unread count when it changed."""
    unread = Notification.objects.filter(recipient=user, is_read=False)
    if notification_ids is not None:
        unread = unread.filter(id__in=notification_ids)
    elif before is not None:
        unread = unread.filter(created_at__lte=before)
    elif not everything:
        return 0
    with transaction.atomic():
        marked = unread.update(is_read=True)
        if marked:
            publish(
                user_stream(user.id),
                NOTIFICATION,
                {
                    "type": "read",
                    "read_ids": [str(i) for i in notification_ids] if notification_ids is not None else None,
                    "unread_count": unread_count(user.id),
                },
            )
    return marked
