from rest_framework import serializers

from core.batch import BatchIdsField, NotFoundListField
from videos.models import Video


class VideoCountersSerializer(serializers.Serializer):
    view_count = serializers.IntegerField()
    like_count = serializers.IntegerField()
    comment_count = serializers.IntegerField()
    remix_count = serializers.IntegerField()
    glitch_count = serializers.IntegerField()


class VideoSerializer(VideoCountersSerializer):
    id = serializers.UUIDField()
    owner_id = serializers.UUIDField()
    title = serializers.CharField()
    file_url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()
    duration_seconds = serializers.FloatField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    codec = serializers.CharField()
    size_bytes = serializers.IntegerField()
    remix_of = serializers.UUIDField(source="remix_of_id", allow_null=True)
    created_at = serializers.DateTimeField()

    def get_file_url(self, video: Video) -> str:
        return video.file.url

    def get_thumbnail_url(self, video: Video) -> str | None:
        return video.thumbnail.url if video.thumbnail else None


class VideoUploadSerializer(serializers.Serializer):
    file = serializers.FileField()
    title = serializers.CharField(max_length=200)
    remix_of = serializers.UUIDField(required=False, allow_null=True)


class VideoPageSerializer(serializers.Serializer):
    results = VideoSerializer(many=True)
    next = serializers.URLField(allow_null=True)


class VideoListSerializer(serializers.Serializer):
    results = VideoSerializer(many=True)


class BatchMetadataRequestSerializer(serializers.Serializer):
    video_ids = BatchIdsField(help_text="At most 100 video ids; duplicates are answered once.")


class BatchMetadataSerializer(serializers.Serializer):
    videos = serializers.DictField(child=VideoCountersSerializer(), help_text="Keyed by video id.")
    not_found = NotFoundListField()


class LikeSerializer(serializers.Serializer):
    liked = serializers.BooleanField()
    like_count = serializers.IntegerField()


class CommentCreateSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=2000)


class CommentSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    video_id = serializers.UUIDField()
    user_id = serializers.UUIDField()
    text = serializers.CharField()
    created_at = serializers.DateTimeField()


class CommentPageSerializer(serializers.Serializer):
    results = CommentSerializer(many=True)
    next = serializers.URLField(allow_null=True)
