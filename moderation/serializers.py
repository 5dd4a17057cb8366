from rest_framework import serializers

from core.batch import BatchIdsField, NotFoundListField


class BatchDeleteRequestSerializer(serializers.Serializer):
    video_ids = BatchIdsField(help_text="At most 100 video ids.")
    reason = serializers.CharField(max_length=2000)


class BatchDeleteSerializer(serializers.Serializer):
    deleted_count = serializers.IntegerField()
    deleted = serializers.ListField(child=serializers.UUIDField())
    not_found = NotFoundListField(help_text="Ids that do not exist or were already deleted.")


class BatchBlockRequestSerializer(serializers.Serializer):
    user_ids = BatchIdsField(help_text="At most 100 user ids to block; blocking again changes nothing.")


class BatchBlockSerializer(serializers.Serializer):
    blocked = serializers.ListField(
        child=serializers.UUIDField(),
        help_text="Every listed id you now block. Whether an account has an id is not told: any id is blocked alike.",
    )
    not_found = NotFoundListField(help_text="Always empty: every well-formed id is blocked (see `blocked`).")


class BlockSerializer(serializers.Serializer):
    """Only the id: a username would tell a blocker who is behind an id they only guessed."""

    user_id = serializers.UUIDField(source="blocked_id")
    created_at = serializers.DateTimeField()


class BlockPageSerializer(serializers.Serializer):
    results = BlockSerializer(many=True)
    next = serializers.URLField(allow_null=True)
