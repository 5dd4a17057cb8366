from typing import Any

from rest_framework import serializers

from aijobs.models import AIJob, JobKind, JobStatus
from core.batch import BatchIdsField, NotFoundListField


class GlitchParamsSerializer(serializers.Serializer):
    intensity = serializers.FloatField(min_value=0.05, max_value=1.0, required=False, default=0.6)


class RemixParamsSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(choices=["reverse", "speed", "loop"], required=False, default="reverse")
    factor = serializers.FloatField(min_value=0.25, max_value=4.0, required=False, default=2.0, help_text="speed: playback speed.")
    times = serializers.IntegerField(min_value=2, max_value=5, required=False, default=2, help_text="loop: repetitions.")


PARAMS_FOR_KIND = {JobKind.GLITCH: GlitchParamsSerializer, JobKind.REMIX: RemixParamsSerializer}


class AIJobCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=JobKind.choices)
    video_id = serializers.UUIDField()
    params = serializers.DictField(required=False, default=dict, help_text="glitch: {intensity}; remix: {mode, factor, times}.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        params = PARAMS_FOR_KIND[attrs["kind"]](data=attrs.get("params") or {})
        if not params.is_valid():
            raise serializers.ValidationError({"params": params.errors})
        attrs["params"] = dict(params.validated_data)
        return attrs


class AIJobSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    job_id = serializers.UUIDField(source="id", help_text="The same as `id`.")
    kind = serializers.ChoiceField(choices=JobKind.choices)
    video_id = serializers.UUIDField()
    params = serializers.DictField()
    status = serializers.ChoiceField(choices=JobStatus.choices)
    progress = serializers.IntegerField()
    result_url = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    cost = serializers.IntegerField()
    refunded = serializers.BooleanField()
    queue_position = serializers.SerializerMethodField()
    estimated_completion = serializers.DateTimeField(allow_null=True)
    version = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)

    def get_result_url(self, job: AIJob) -> str | None:
        return job.result_url

    def get_error(self, job: AIJob) -> str | None:
        return job.error or None

    def get_queue_position(self, job: AIJob) -> int | None:
        """1 for the next job to start; null unless queued."""
        return getattr(job, "queue_position", None) if job.status == JobStatus.QUEUED else None


# The `ai_job_update` payload: these fields of the job as the REST answers give them.
EVENT_FIELDS = ("id", "status", "progress", "result_url", "error", "version")


def job_event_payload(job: Any) -> dict[str, Any]:
    """The `ai_job_update` payload, from AIJobSerializer so the wire format is defined once."""
    data = AIJobSerializer(job).data
    return {name: data[name] for name in EVENT_FIELDS}


class AIJobPageSerializer(serializers.Serializer):
    results = AIJobSerializer(many=True)
    next = serializers.URLField(allow_null=True)


class AIJobFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=JobStatus.choices, required=False)


class JobStatusSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=JobStatus.choices)
    progress = serializers.IntegerField()
    result_url = serializers.CharField(allow_null=True)
    error = serializers.CharField(allow_null=True)


class BatchStatusRequestSerializer(serializers.Serializer):
    job_ids = BatchIdsField(help_text="At most 100 job ids; duplicates are answered once.")


class BatchStatusSerializer(serializers.Serializer):
    jobs = serializers.DictField(child=JobStatusSerializer(), help_text="Keyed by job id; your own jobs only.")
    not_found = NotFoundListField()


class CreditsSerializer(serializers.Serializer):
    balance = serializers.IntegerField()
    costs = serializers.DictField(child=serializers.IntegerField(), help_text="Credits each job kind costs.")
