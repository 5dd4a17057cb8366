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
    blocked = serializers.ListField(child=serializers.UUIDField(), help_text="Users you now block (listed ones that exist).")
    not_found = NotFoundListField()


class BlockSerializer(serializers.Serializer):
    user_id = serializers.UUIDField(source="blocked_id")
    username = serializers.CharField(source="blocked.username")
    created_at = serializers.DateTimeField()


class BlockPageSerializer(serializers.Serializer):
    results = BlockSerializer(many=True)
    next = serializers.URLField(allow_null=True)
