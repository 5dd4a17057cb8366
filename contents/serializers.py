"""Shapes only: no rules live here beyond input validation."""

from datetime import datetime
from typing import Any

from rest_framework import serializers

from contents.models import ContentStatus, ProcessingStatus
from core.batch import BatchIdsField, NotFoundListField

# The stages whose events carry the partial result so far.
GENERATING = frozenset({ProcessingStatus.SUMMARIZING, ProcessingStatus.QA_GENERATING})


class QAPairSerializer(serializers.Serializer):
    question = serializers.CharField()
    answer = serializers.CharField()


class AIGenMetadataSerializer(serializers.Serializer):
    summary = serializers.CharField(required=False, allow_blank=True)
    qa_list = QAPairSerializer(many=True, required=False)


class LinkPreviewMetadataSerializer(serializers.Serializer):
    title = serializers.CharField(allow_null=True, required=False)
    description = serializers.CharField(allow_null=True, required=False)
    image_url = serializers.CharField(allow_null=True, required=False)
    site_name = serializers.CharField(allow_null=True, required=False)


class ContentSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    channel_id = serializers.UUIDField()
    provider_id = serializers.UUIDField()
    url = serializers.CharField(allow_blank=True)
    img_url = serializers.CharField(allow_blank=True)
    video_url = serializers.CharField(allow_blank=True)
    title = serializers.CharField(allow_blank=True)
    description = serializers.CharField(allow_blank=True)
    category = serializers.CharField(allow_blank=True)
    status = serializers.ChoiceField(choices=ContentStatus.choices)
    processing_status = serializers.ChoiceField(choices=ProcessingStatus.choices)
    progress = serializers.IntegerField(min_value=0, max_value=100)
    estimated_completion = serializers.DateTimeField(allow_null=True)
    error_message = serializers.CharField(allow_null=True, source="error_message_or_none")
    ai_gen_metadata = AIGenMetadataSerializer(allow_null=True)
    link_preview_metadata = LinkPreviewMetadataSerializer(allow_null=True)
    version = serializers.IntegerField(help_text="Raised by every status change; keep the highest you have seen.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class OffsetDateTimeField(serializers.DateTimeField):
    """ISO 8601 with the UTC offset written out (`+00:00`), as events have always carried
    their timestamps (DRF's own writes `Z`, which the REST answers keep)."""

    def to_representation(self, value: datetime) -> str:
        # DRF writes None itself and calls this only with a value.
        return self.enforce_timezone(value).isoformat()


class ContentEventSerializer(serializers.Serializer):
    """The payload of every content event (`content_status_update`, `processing_complete`,
    `processing_error`): the content's full current status, not a delta, so a late or
    repeated event is harmless (clients keep the highest `version`). `ai_gen_metadata`
    once complete, in the shape the REST answers give it, and while generating
    (summarizing, qa_generating) the partial result so far, once there is one."""

    content_id = serializers.UUIDField(source="id")
    status = serializers.ChoiceField(choices=ContentStatus.choices)
    processing_status = serializers.ChoiceField(choices=ProcessingStatus.choices)
    progress = serializers.IntegerField(min_value=0, max_value=100)
    estimated_completion = OffsetDateTimeField(allow_null=True)
    error_message = serializers.CharField(allow_null=True, source="error_message_or_none")
    version = serializers.IntegerField()
    timestamp = OffsetDateTimeField(source="updated_at")
    ai_gen_metadata = AIGenMetadataSerializer(
        allow_null=True, required=False,
        help_text="Once `completed`; while `summarizing` or `qa_generating`, the partial result so far (the summary "
        "growing sentence by sentence, the Q&A pairs done), on `content_status_update`.",
    )

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data = super().to_representation(instance)
        partial = instance.processing_status in GENERATING and instance.ai_gen_metadata is not None
        if instance.processing_status != ProcessingStatus.COMPLETED and not partial:
            del data["ai_gen_metadata"]
        return data


class ContentListSerializer(serializers.Serializer):
    contents = ContentSerializer(many=True)


class PaginatedContentListSerializer(serializers.Serializer):
    contents = ContentSerializer(many=True)
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)


class ContentFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=ContentStatus.choices, required=False)


class HttpUrlField(serializers.URLField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("max_length", 2048)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if value and not value.lower().startswith(("http://", "https://")):
            raise serializers.ValidationError("Only http and https URLs are accepted.")
        return value


class ContentCreateSerializer(serializers.Serializer):
    channel_id = serializers.UUIDField()
    url = HttpUrlField()
    img_url = HttpUrlField()
    video_url = HttpUrlField()
    title = serializers.CharField(max_length=500, required=False, allow_blank=True)
    description = serializers.CharField(max_length=20000, required=False, allow_blank=True)
    category = serializers.CharField(max_length=100, required=False, allow_blank=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not any(attrs.get(f) for f in ("url", "img_url", "video_url", "title", "description")):
            raise serializers.ValidationError(
                "Send at least one of url, img_url, video_url, or a title or description to summarize."
            )
        return attrs


class ProcessingContentSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=ContentStatus.choices)
    processing_status = serializers.ChoiceField(choices=ProcessingStatus.choices)
    progress = serializers.IntegerField()
    estimated_completion = serializers.DateTimeField(allow_null=True)


class FinishedContentSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=ContentStatus.choices)
    processing_status = serializers.ChoiceField(choices=ProcessingStatus.choices)


class FailedContentSerializer(FinishedContentSerializer):
    error_message = serializers.CharField()


class ChannelStatusSerializer(serializers.Serializer):
    processing_contents = ProcessingContentSerializer(many=True, help_text="Contents not finished (idle or generating), oldest first, at most 100.")
    completed_contents = FinishedContentSerializer(many=True, help_text="At most the 100 most recently completed, or those completed after `since`.")
    failed_contents = FailedContentSerializer(many=True, help_text="At most the 100 most recently failed, or those failed after `since`.")
    has_processing = serializers.BooleanField()
    total_processing = serializers.IntegerField()
    total_completed = serializers.IntegerField()
    total_failed = serializers.IntegerField()


class ChannelStatusQuerySerializer(serializers.Serializer):
    since = serializers.DateTimeField(required=False, help_text="Only contents finished after this timestamp.")


class ContentStatusBatchRequestSerializer(serializers.Serializer):
    content_ids = BatchIdsField(help_text="At most 100 content ids; duplicates are answered once.")


class ContentStatusItemSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=ContentStatus.choices)
    processing_status = serializers.ChoiceField(choices=ProcessingStatus.choices)
    progress = serializers.IntegerField()
    estimated_completion = serializers.DateTimeField(allow_null=True)
    error_message = serializers.CharField(allow_null=True)
    version = serializers.IntegerField()


class ContentStatusBatchSerializer(serializers.Serializer):
    statuses = ContentStatusItemSerializer(many=True)
    not_found = NotFoundListField()


class ChannelCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)


class ChannelSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    owner_id = serializers.UUIDField()
    created_at = serializers.DateTimeField()


class ChannelMembersRequestSerializer(serializers.Serializer):
    user_ids = BatchIdsField(help_text="At most 100 user ids to let read the channel.")


class ChannelMembersSerializer(serializers.Serializer):
    channel_id = serializers.UUIDField()
    added = serializers.ListField(
        child=serializers.UUIDField(),
        help_text="Every listed id, now let read the channel. Whether an account has an id is not told: any id is added alike.",
    )
    not_found = NotFoundListField(help_text="Always empty: every well-formed id is added (see `added`).")
