"""Contents as a kind of core.lifecycle: the pipeline's stages and edges, what a content
takes on entering each, the event it publishes and the sweep's policy for it. Its side
effects (stage timings, notifications) are steps of contents.services, not here."""

from datetime import datetime
from typing import Any

from django.conf import settings

from contents.eta import estimate_completion
from contents.models import ACTIVE_STAGES, STATUS_OF_STAGE, Content, ProcessingStatus
from contents.serializers import ContentEventSerializer
from core.lifecycle import Kind, StallPolicy
from realtime.streams import channel_stream, publish

Stage = ProcessingStatus

CONTENT_STATUS_UPDATE = "content_status_update"
PROCESSING_COMPLETE = "processing_complete"
PROCESSING_ERROR = "processing_error"

# Every allowed move. Retry (from failed) and regenerate (from completed) both start
# the pipeline over at uploading.
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    Stage.UPLOADING: frozenset({Stage.SUMMARIZING, Stage.FAILED}),
    Stage.SUMMARIZING: frozenset({Stage.QA_GENERATING, Stage.FAILED}),
    Stage.QA_GENERATING: frozenset({Stage.COMPLETED, Stage.FAILED}),
    Stage.COMPLETED: frozenset({Stage.UPLOADING}),
    Stage.FAILED: frozenset({Stage.UPLOADING}),
}
PROGRESS_ON_ENTRY: dict[str, int] = {Stage.UPLOADING: 0, Stage.SUMMARIZING: 30, Stage.QA_GENERATING: 65, Stage.COMPLETED: 100}


def event_type_for(stage: str) -> str:
    if stage == Stage.COMPLETED:
        return PROCESSING_COMPLETE
    if stage == Stage.FAILED:
        return PROCESSING_ERROR
    return CONTENT_STATUS_UPDATE


def event(content: Content) -> tuple[str, str, dict[str, Any]]:
    """The event of a content as it now is (the REST answers' shapes, core of the wire format)."""
    return (
        channel_stream(content.channel_id),
        event_type_for(content.processing_status),
        ContentEventSerializer(content).data,
    )


def on_entry(content: Content, to: str, now: datetime, error: str) -> dict[str, Any]:
    values: dict[str, Any] = {"status": STATUS_OF_STAGE[to], "updated_at": now}
    if to == Stage.FAILED:
        values.update(error_message=error[:2000] or "Processing failed.", estimated_completion=None, finished_at=now)
    else:
        values.update(progress=PROGRESS_ON_ENTRY[to], error_message="")
    if to in ACTIVE_STAGES:
        values.update(
            stage_started_at=now, finished_at=None, estimated_completion=estimate_completion(to, stage_started_at=now, now=now)
        )
    elif to == Stage.COMPLETED:
        values.update(estimated_completion=None, finished_at=now)
    return values


def give_up(content: Content) -> str:
    stage = content.get_processing_status_display().lower()
    return f"Processing stopped responding ({stage}) and was given up after {content.attempts} attempts."


CONTENT = Kind(
    name="content",
    model=Content,
    status_field="processing_status",
    fence_field="job_id",
    run_id_prefix="content",
    edges=ALLOWED_TRANSITIONS,
    on_entry=on_entry,
    event=event,
    publish=publish,
    task="contents.tasks.run_pipeline",
    job_timeout=lambda: settings.CONTENT_JOB_TIMEOUT,
    running=ACTIVE_STAGES,
    # A worker dying mid-stage is retried (the pipeline resumes at its stage) up to
    # CONTENT_MAX_ATTEMPTS, within CONTENT_STALL_SECONDS + CONTENT_SWEEP_INTERVAL; a lost
    # enqueue is repaired within CONTENT_ENQUEUE_GRACE_SECONDS + CONTENT_SWEEP_INTERVAL.
    stall=StallPolicy(
        lost_in=ACTIVE_STAGES,
        lost_after=lambda: settings.CONTENT_ENQUEUE_GRACE_SECONDS,
        stalled_in=ACTIVE_STAGES,
        stall_after=lambda: settings.CONTENT_STALL_SECONDS,
        fail_to=Stage.FAILED,
        give_up=give_up,
        max_attempts=lambda: settings.CONTENT_MAX_ATTEMPTS,
    ),
)
