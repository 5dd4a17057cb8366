"""AI jobs: create, start (charging credits), progress, finish, cancel. A job's
status and progress change only in `transition()`, which writes the change, the
refund or the source video's counter, and the `ai_job_update` event in one
transaction."""

import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from aijobs import credits
from aijobs.models import CANCELLED, FINISHED, INSUFFICIENT_CREDITS, AIJob, JobStatus
from notifications.models import NotificationType
from notifications.services import notify
from realtime.streams import publish, user_stream
from videos.models import Video
from videos.services import video_count_ai_result

AI_JOB_UPDATE = "ai_job_update"
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    JobStatus.QUEUED: frozenset({JobStatus.PROCESSING, JobStatus.FAILED}),
    # processing -> processing is a progress step.
    JobStatus.PROCESSING: frozenset({JobStatus.PROCESSING, JobStatus.COMPLETED, JobStatus.FAILED}),
}


class TransitionNotAllowed(Exception):
    pass


class JobsInFlightLimitReached(Exception):
    """The owner already has AI_JOB_MAX_IN_FLIGHT_PER_USER jobs queued or processing."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"You have {limit} AI jobs queued or processing, the most one user may have at once; "
            "wait for one to finish (or cancel one) and try again."
        )
        self.limit = limit


def result_url(job: AIJob) -> str | None:
    return job.result_file.url if job.result_file else None


def event_payload(job: AIJob) -> dict[str, Any]:
    return {
        "id": str(job.id),
        "status": job.status,
        "progress": job.progress,
        "result_url": result_url(job),
        "error": job.error or None,
        "version": job.version,
    }


def _estimate(job: AIJob, progress: int, now) -> Any:  # type: ignore[no-untyped-def]
    if not job.started_at or progress <= 0:
        return None
    elapsed = (now - job.started_at).total_seconds()
    return now + timedelta(seconds=elapsed * (100 - progress) / progress)


def transition(
    job: AIJob, *, to: str, progress: int | None = None, changes: dict[str, Any] | None = None, error: str = ""
) -> AIJob | None:
    """Move the job as it was read (status, version, run, no cancel pending for a
    progress step); None if it moved meanwhile."""
    source = job.status
    if to not in ALLOWED_TRANSITIONS.get(source, frozenset()):
        raise TransitionNotAllowed(f"An AI job cannot move from {source} to {to}.")
    now = timezone.now()
    values: dict[str, Any] = {"status": to, **(changes or {})}
    match: dict[str, Any] = {"id": job.id, "status": source, "version": job.version, "rq_job_id": job.rq_job_id}
    if to == JobStatus.PROCESSING:
        values["heartbeat_at"] = now
        if source == JobStatus.QUEUED:
            values.update(started_at=now, progress=0)
        else:
            match["cancel_requested"] = False
        if progress is not None:
            values.update(progress=progress, estimated_completion=_estimate(job, progress, now))
    elif to == JobStatus.COMPLETED:
        values.update(progress=100, finished_at=now, estimated_completion=None)
    elif to == JobStatus.FAILED:
        values.update(error=error or "The job failed.", finished_at=now, estimated_completion=None)
        if job.charged and not job.refunded:
            values["refunded"] = True

    with transaction.atomic():
        if not AIJob.objects.filter(**match).update(version=F("version") + 1, **values):
            return None
        for field, value in values.items():
            setattr(job, field, value)
        job.version += 1
        if values.get("refunded"):
            credits.add(user=job.owner, amount=job.cost, reason=f"Refund: {job.kind} job failed ({job.error})", job=job)
        if to == JobStatus.COMPLETED:
            video_count_ai_result(video_id=job.video_id, kind=job.kind)
        if to in FINISHED:
            notify(
                recipient_id=job.owner_id, actor_id=None,
                type=NotificationType.AI_JOB_COMPLETED if to == JobStatus.COMPLETED else NotificationType.AI_JOB_FAILED,
                data={"job_id": str(job.id), "kind": job.kind, "video_id": str(job.video_id),
                      "result_url": result_url(job), "error": job.error or None},
            )
        publish(user_stream(job.owner_id), AI_JOB_UPDATE, event_payload(job))
    return job


def new_rq_job_id(job_id: uuid.UUID) -> str:
    return f"aijob-{job_id}-{uuid.uuid4().hex[:12]}"


def job_create(*, owner: Any, kind: str, video: Video, params: dict[str, Any]) -> AIJob:
    """Queue a job; credits are taken when a worker starts it. Raises
    JobsInFlightLimitReached, creating nothing, when the owner already has
    AI_JOB_MAX_IN_FLIGHT_PER_USER jobs queued or processing: credits are only checked
    at start, so without it one user could fill the queue (and the workers) at will."""
    from aijobs.tasks import enqueue_job

    job_id = uuid.uuid4()
    limit = settings.AI_JOB_MAX_IN_FLIGHT_PER_USER
    with transaction.atomic():
        # The owner's row is locked so that one create at a time counts that user's jobs:
        # two concurrent creates must not both see the last free place.
        get_user_model().objects.select_for_update().filter(pk=owner.pk).values_list("pk").get()
        if AIJob.objects.filter(owner=owner).exclude(status__in=FINISHED).count() >= limit:
            raise JobsInFlightLimitReached(limit)
        job = AIJob.objects.create(
            id=job_id, owner=owner, kind=kind, video=video, params=params,
            cost=settings.AI_JOB_COSTS[kind], rq_job_id=new_rq_job_id(job_id),
        )
        publish(user_stream(owner.id), AI_JOB_UPDATE, event_payload(job))
        # robust: a failed enqueue (Redis away) must not fail the committed request;
        # the sweep enqueues lost ones again (aijobs.runner.sweep_stalled).
        transaction.on_commit(lambda: enqueue_job(job.id, rq_job_id=job.rq_job_id), robust=True)
    return job


def job_start(job: AIJob) -> AIJob | None:
    """queued -> processing, paid for; or failed with "Insufficient credits", costing
    nothing. Both in one transaction, so a lost race takes no credits."""
    with transaction.atomic():
        if not credits.spend(user=job.owner, amount=job.cost, reason=f"{job.kind} job", job=job):
            return transition(job, to=JobStatus.FAILED, error=INSUFFICIENT_CREDITS)
        started = transition(job, to=JobStatus.PROCESSING, changes={"charged": True})
        if started is None:
            transaction.set_rollback(True)
        return started


def job_cancel(job: AIJob) -> AIJob:
    """Cancel (idempotent). A queued job fails at once; a processing one is marked and
    its worker stops at the next progress check. Either way it ends `failed` with
    error "Cancelled", refunded if it was charged."""
    for _ in range(3):
        if job.status in FINISHED or job.cancel_requested:
            return job
        if job.status == JobStatus.QUEUED:
            cancelled = transition(job, to=JobStatus.FAILED, error=CANCELLED)
            if cancelled:
                return cancelled
        else:
            AIJob.objects.filter(id=job.id, status=JobStatus.PROCESSING).update(cancel_requested=True)
        job = AIJob.objects.select_related("owner").get(id=job.id)
    return job
