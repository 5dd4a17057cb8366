from typing import Any

from rest_framework import serializers

from core.batch import BatchIdsField, NotFoundListField
from notifications.models import Notification, NotificationType


class NotificationSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    type = serializers.ChoiceField(choices=NotificationType.choices)
    actor_id = serializers.UUIDField(allow_null=True, help_text="Who did it (the latest of a group); null for the system.")
    data = serializers.SerializerMethodField(  # type: ignore[assignment]  # the contract's field; DRF's metaclass pops declared fields, Serializer.data stays
        help_text="What it is about; `count` is how many events this row groups."
    )
    is_read = serializers.BooleanField()
    created_at = serializers.DateTimeField()

    def get_data(self, notification: Notification) -> dict[str, Any]:
        return {**notification.data, "count": notification.count}


class NotificationPageSerializer(serializers.Serializer):
    results = NotificationSerializer(many=True)
    next = serializers.URLField(allow_null=True)
    unread_count = serializers.IntegerField()


class NotificationFilterSerializer(serializers.Serializer):
    unread = serializers.BooleanField(required=False, allow_null=True, default=None, help_text="true: only unread ones.")


class MarkReadRequestSerializer(serializers.Serializer):
    """Exactly one of: `notification_ids` (at most 100), `all: true` (mark all read), or
    `before` (every notification created at or before this time)."""

    notification_ids = BatchIdsField(required=False, help_text="At most 100 of your notification ids.")
    all = serializers.BooleanField(required=False, help_text="true: mark all your notifications read.")
    before = serializers.DateTimeField(required=False, help_text="Mark read everything created at or before this time.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        given = [k for k in ("notification_ids", "before") if k in attrs] + (["all"] if attrs.get("all") else [])
        if len(given) != 1:
            raise serializers.ValidationError("Send exactly one of notification_ids, all: true, or before.")
        return attrs


class MarkReadSerializer(serializers.Serializer):
    marked_count = serializers.IntegerField(help_text="Notifications that were unread and are now read.")
    success = serializers.BooleanField(help_text="True whenever the call was valid, even if nothing needed marking.")
    not_found = NotFoundListField()
    unread_count = serializers.IntegerField()
