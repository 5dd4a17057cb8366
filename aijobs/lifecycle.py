"""AI jobs as a kind of core.lifecycle: their states and edges, what a job takes on
entering each, the `ai_job_update` event and the sweep's policy. Refunds, counters and
notifications are steps of aijobs.services, not here."""

from datetime import datetime
from typing import Any

from django.conf import settings

from aijobs.models import AIJob, JobStatus
from aijobs.serializers import job_event_payload
from core.lifecycle import Kind, StallPolicy
from realtime.streams import publish, user_stream

AI_JOB_UPDATE = "ai_job_update"
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    JobStatus.QUEUED: frozenset({JobStatus.PROCESSING, JobStatus.FAILED}),
    # processing -> processing is a progress step.
    JobStatus.PROCESSING: frozenset({JobStatus.PROCESSING, JobStatus.COMPLETED, JobStatus.FAILED}),
}
WORKER_STOPPED = "The worker processing this job stopped; credits refunded."


def event(job: AIJob) -> tuple[str, str, dict[str, Any]]:
    return user_stream(job.owner_id), AI_JOB_UPDATE, job_event_payload(job)


def on_entry(job: AIJob, to: str, now: datetime, error: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if to == JobStatus.PROCESSING and job.status == JobStatus.QUEUED:
        values.update(started_at=now, progress=0)
    elif to == JobStatus.COMPLETED:
        values.update(progress=100, finished_at=now, estimated_completion=None)
    elif to == JobStatus.FAILED:
        values.update(error=error or "The job failed.", finished_at=now, estimated_completion=None)
        if job.charged and not job.refunded:
            values["refunded"] = True  # paid back by aijobs.services.refund_if_failed
    return values


def guard(job: AIJob, to: str) -> dict[str, Any]:
    # A progress step never overwrites a cancel request: the runner stops instead.
    return {"cancel_requested": False} if to == job.status == JobStatus.PROCESSING else {}


AI_JOB = Kind(
    name="AI job",
    model=AIJob,
    status_field="status",
    fence_field="rq_job_id",
    run_id_prefix="aijob",
    edges=ALLOWED_TRANSITIONS,
    on_entry=on_entry,
    event=event,
    publish=publish,
    task="aijobs.tasks.run_job",
    job_timeout=lambda: settings.AI_JOB_TIMEOUT,
    running=(JobStatus.PROCESSING,),
    guard=guard,
    # A job is never retried (its credits were spent on a run that may have half
    # happened): a dead worker's job fails and is refunded. A queued job whose enqueue
    # was lost is enqueued again.
    stall=StallPolicy(
        lost_in=(JobStatus.QUEUED,),
        lost_after=lambda: settings.AI_JOB_STALL_SECONDS,
        stalled_in=(JobStatus.PROCESSING,),
        stall_after=lambda: settings.AI_JOB_STALL_SECONDS,
        fail_to=JobStatus.FAILED,
        give_up=lambda job: WORKER_STOPPED,
    ),
)
